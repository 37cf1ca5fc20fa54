package failsoft_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/failsoft/failsoft"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/retry"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// These tests check that the suite, with its defaults, sheds no call that
// could succeed when calls fail for reasons that are not the target's:
// callers whose budgets are too short for a healthy target, a target that
// is slow rather than down, callers that cancel. Each runs the same load
// through a plain client as a control, on loopback backends that answer
// after a fixed delay, and judges on counts: calls that succeeded, attempts
// that reached the backends, the layers' decisions (observer events).

// slowBackend answers PlainService/Idempotent and TunedService/Hedged
// after delay, or fails with its context.
type slowBackend struct {
	policytestv1.UnimplementedPlainServiceServer
	delay    time.Duration
	calls    atomic.Int64 // attempts that reached it
	inFlight atomic.Int64
	peak     atomic.Int64 // most attempts in flight at once
}

func (s *slowBackend) Idempotent(ctx context.Context, req *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
	s.calls.Add(1)
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
	}
	t := time.NewTimer(s.delay)
	defer t.Stop()
	select {
	case <-t.C:
		return &policytestv1.PingResponse{Payload: req.GetPayload()}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// tunedBackend serves TunedService/Hedged from a slowBackend.
type tunedBackend struct {
	policytestv1.UnimplementedTunedServiceServer
	b *slowBackend
}

func (s tunedBackend) Hedged(ctx context.Context, req *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
	return s.b.Idempotent(ctx, req)
}

// decisions counts the observer events that shed calls or open breakers.
type decisions struct {
	mu sync.Mutex
	n  map[observe.Kind]int
}

func (d *decisions) Observe(_ context.Context, e observe.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.n[e.Kind]++
}

func (d *decisions) count(k observe.Kind) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n[k]
}

// probe is a client of three loopback backends that answer after delay,
// through the suite with its defaults or through a plain round-robin
// client.
type probe struct {
	backends []*slowBackend
	plain    policytestv1.PlainServiceClient
	tuned    policytestv1.TunedServiceClient
	seen     *decisions
}

func newProbe(t *testing.T, delay time.Duration, suite bool) *probe {
	t.Helper()
	p := &probe{seen: &decisions{n: map[observe.Kind]int{}}}
	var addrs []resolver.Address
	for range 3 {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := grpc.NewServer()
		b := &slowBackend{delay: delay}
		policytestv1.RegisterPlainServiceServer(srv, b)
		policytestv1.RegisterTunedServiceServer(srv, tunedBackend{b: b})
		go srv.Serve(lis)
		t.Cleanup(srv.Stop)
		p.backends = append(p.backends, b)
		addrs = append(addrs, resolver.Address{Addr: lis.Addr().String()})
	}
	r := manual.NewBuilderWithScheme("probe")
	r.InitialState(resolver.State{Addresses: addrs})
	dopts := []grpc.DialOption{grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`)}
	if suite {
		var err error
		dopts, err = failsoft.DialOptions(failsoft.WithoutTelemetry(), failsoft.WithObserver(p.seen))
		if err != nil {
			t.Fatal(err)
		}
	}
	conn, err := grpc.NewClient("probe:///backends", append(dopts,
		grpc.WithResolvers(r), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	p.plain, p.tuned = policytestv1.NewPlainServiceClient(conn), policytestv1.NewTunedServiceClient(conn)
	return p
}

// attempts returns the attempts that reached each backend, and the most
// any had in flight at once.
func (p *probe) attempts() (per []int64, total, peak int64) {
	for _, b := range p.backends {
		per = append(per, b.calls.Load())
		total += b.calls.Load()
		peak = max(peak, b.peak.Load())
	}
	return per, total, peak
}

// balanced says whether every backend got at least half the attempts of
// the busiest: round robin over backends none of which was ejected.
func balanced(per []int64) bool {
	lo, hi := per[0], per[0]
	for _, n := range per {
		lo, hi = min(lo, n), max(hi, n)
	}
	return 2*lo >= hi
}

// load runs calls from workers goroutines, calls each; call(w, i) makes
// call i of worker w and says whether it counts (kept) and succeeded.
func load(workers, calls int, call func(w, i int) (kept, ok bool)) (okKept, kept int) {
	var nOK, nKept atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range calls {
				if k, ok := call(w, i); k {
					nKept.Add(1)
					if ok {
						nOK.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	return int(nOK.Load()), int(nKept.Load())
}

// TestShortDeadlines: a healthy target answering in 20 ms, and callers of
// which some pass on a nearly spent budget (10 ms) and the others have a
// second, fifty times what a call takes, so that a busy test machine does
// not fail them. The short calls cannot succeed; they are the callers'
// problem. Every long call must succeed, as through a plain client: no
// breaker opens, the throttle sheds nothing, outlier ejection keeps every
// backend. The deadline layer's learned floor fails the short calls fast,
// unsent, once the method has answered a few calls. Without it, 90 % of
// short calls opened the breaker and made the throttle shed 26 calls (4 of
// 30 long calls succeeded); 60 % made it shed 15 (6 of 120 long calls
// failed), and earlier versions saw outlier ejection take a healthy
// backend out.
func TestShortDeadlines(t *testing.T) {
	for _, short := range []int{3, 6, 9} { // in 10 calls
		for _, suite := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d0%%_short/suite=%v", short, suite), func(t *testing.T) {
				p := newProbe(t, 20*time.Millisecond, suite)
				call := func(budget time.Duration) bool {
					ctx, cancel := context.WithTimeout(context.Background(), budget)
					defer cancel()
					_, err := p.plain.Idempotent(ctx, &policytestv1.PingRequest{Payload: "x"})
					return err == nil
				}
				// A client that has run a while: its method has answered.
				for range 6 {
					if !call(time.Second) {
						t.Fatal("a warm-up call failed")
					}
				}
				ok, n := load(10, 30, func(w, i int) (bool, bool) {
					if (w+i)%10 < short {
						call(10 * time.Millisecond)
						return false, false
					}
					return true, call(time.Second)
				})
				per, total, _ := p.attempts()
				t.Logf("1 s callers: %d of %d succeeded; attempts per backend %v (%d); breaker changes %d, throttled %d, failed fast %d",
					ok, n, per, total, p.seen.count(observe.BreakerState), p.seen.count(observe.Throttled), p.seen.count(observe.DeadlineFailFast))
				if ok != n {
					t.Errorf("%d of %d calls with 1 s failed against a target that answers in 20 ms", n-ok, n)
				}
				if c := p.seen.count(observe.BreakerState); c != 0 {
					t.Errorf("%d breaker state changes, want none", c)
				}
				if c := p.seen.count(observe.Throttled); c != 0 {
					t.Errorf("%d calls throttled, want none", c)
				}
				if !balanced(per) {
					t.Errorf("attempts per backend %v: a healthy backend was ejected", per)
				}
			})
		}
	}
}

// TestSlowTarget: every backend answers 7.5 times slower than usual
// (150 ms instead of 20 ms), without errors, and callers allow 1 s. A
// plain method with no per-attempt timeout and a hedged method (its second
// attempt 100 ms after the first) must succeed as through a plain client,
// and hedging must not multiply the slow target's load: the retry budget
// keeps the attempts per call within 1.3 (1.17-1.20 measured). A caller's
// per-attempt timeout of 100 ms, shorter than every answer, cuts attempts
// and retries them; the last attempt, and any the budget would not retry,
// run uncut, so every call succeeds, at most 2 attempts per call (1.76
// measured), and the cuts open no breaker.
func TestSlowTarget(t *testing.T) {
	for _, method := range []string{"plain", "hedged", "attempt timeout"} {
		for _, suite := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/suite=%v", method, suite), func(t *testing.T) {
				p := newProbe(t, 150*time.Millisecond, suite)
				ok, n := load(10, 10, func(w, i int) (bool, bool) {
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					defer cancel()
					var err error
					switch method {
					case "hedged":
						_, err = p.tuned.Hedged(ctx, &policytestv1.PingRequest{Payload: "x"})
					case "attempt timeout":
						// Shorter than the target's every answer.
						_, err = p.plain.Idempotent(ctx, &policytestv1.PingRequest{Payload: "x"}, retry.WithAttemptTimeout(100*time.Millisecond))
					default:
						_, err = p.plain.Idempotent(ctx, &policytestv1.PingRequest{Payload: "x"})
					}
					return true, err == nil
				})
				per, total, peak := p.attempts()
				perCall := float64(total) / float64(n)
				t.Logf("%d of %d succeeded; %.2f attempts per call %v, at most %d in flight on a backend; hedges %d, breaker changes %d",
					ok, n, perCall, per, peak, p.seen.count(observe.Hedge), p.seen.count(observe.BreakerState))
				if ok != n {
					t.Errorf("%d of %d calls failed against a slow but healthy target", n-ok, n)
				}
				// An attempt timeout shorter than every answer cuts attempts
				// and retries them while the budget lasts; then attempts run
				// uncut. Otherwise only hedges add attempts.
				limit := 1.3
				if method == "attempt timeout" && suite {
					limit = 2
				}
				if perCall > limit {
					t.Errorf("%.2f attempts per call, want at most %.1f", perCall, limit)
				}
				if c := p.seen.count(observe.BreakerState); c != 0 {
					t.Errorf("%d breaker state changes, want none", c)
				}
			})
		}
	}
}

// TestCancelledCallers: a healthy target, and callers that cancel 90 % of
// their calls, in flight or before sending them. Nothing may count that
// against the target: the other calls all succeed, no breaker changes,
// nothing is throttled, no backend is ejected, and no cancelled call is
// retried.
func TestCancelledCallers(t *testing.T) {
	for _, when := range []string{"in flight", "before"} {
		for _, suite := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/suite=%v", when, suite), func(t *testing.T) {
				p := newProbe(t, 20*time.Millisecond, suite)
				ok, n := load(10, 40, func(w, i int) (bool, bool) {
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					defer cancel()
					cancels := (w+i)%10 != 0
					if cancels && when == "before" {
						cancel()
					} else if cancels {
						// The backend takes 20 ms: the call is in flight.
						stop := time.AfterFunc(5*time.Millisecond, cancel)
						defer stop.Stop()
					}
					_, err := p.plain.Idempotent(ctx, &policytestv1.PingRequest{Payload: "x"})
					return !cancels, err == nil
				})
				per, total, _ := p.attempts()
				t.Logf("kept callers: %d of %d succeeded; attempts per backend %v (%d for 400 calls); breaker changes %d, throttled %d",
					ok, n, per, total, p.seen.count(observe.BreakerState), p.seen.count(observe.Throttled))
				if ok != n {
					t.Errorf("%d of %d calls nobody cancelled failed", n-ok, n)
				}
				if total > 400 {
					t.Errorf("%d attempts for 400 calls: a cancelled call was retried", total)
				}
				if c := p.seen.count(observe.BreakerState); c != 0 {
					t.Errorf("%d breaker state changes, want none", c)
				}
				if c := p.seen.count(observe.Throttled); c != 0 {
					t.Errorf("%d calls throttled, want none", c)
				}
				if when == "in flight" && !balanced(per) {
					t.Errorf("attempts per backend %v: a healthy backend was ejected", per)
				}
			})
		}
	}
}
