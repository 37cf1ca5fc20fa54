package outlier_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft"
	"github.com/failsoft/failsoft/interceptors/internal/testserver"
	"github.com/failsoft/failsoft/interceptors/outlier"
	pb "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// Backend modes.
const (
	healthy  int32 = iota
	failing        // every call fails UNAVAILABLE
	slow           // every call answers 50 ms late
	shedding       // 40% of calls fail UNAVAILABLE, some five in a row, as overload is shed
)

// shed is the shedding backend's answers to its calls in turn, F failing:
// 10 of 25, five of them in a row.
const shed = "SSFSSFFFFFSSFSSFSSFSSSSFS"

// backend answers PlainService/Idempotent as its mode says, counting the
// attempts that reach it.
type backend struct {
	pb.UnimplementedPlainServiceServer
	mode  atomic.Int32
	calls atomic.Int64
}

func (b *backend) Idempotent(ctx context.Context, req *pb.PingRequest) (*pb.PingResponse, error) {
	n := b.calls.Add(1)
	switch b.mode.Load() {
	case failing:
		return nil, status.Error(codes.Unavailable, "this backend is broken")
	case shedding:
		if shed[(n-1)%int64(len(shed))] == 'F' {
			return nil, status.Error(codes.Unavailable, "too many requests")
		}
	case slow:
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return &pb.PingResponse{Payload: req.GetPayload()}, nil
}

// fleet is three loopback backends behind one target, reached through
// failsoft.DialOptions(opts...).
type fleet struct {
	backends [3]*backend
	client   pb.PlainServiceClient
}

func newFleet(t *testing.T, opts ...failsoft.Option) *fleet {
	t.Helper()
	f := &fleet{}
	var addrs []resolver.Address
	for i := range f.backends {
		b := &backend{}
		f.backends[i] = b
		addr := testserver.Serve(t, func(s *grpc.Server) { pb.RegisterPlainServiceServer(s, b) })
		addrs = append(addrs, resolver.Address{Addr: addr})
	}
	r := manual.NewBuilderWithScheme("outlier-fleet")
	r.InitialState(resolver.State{Addresses: addrs})
	dopts, err := failsoft.DialOptions(append([]failsoft.Option{failsoft.WithoutTelemetry()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	f.client = pb.NewPlainServiceClient(testserver.Dial(t, "outlier-fleet:///three", append(dopts, grpc.WithResolvers(r))...))
	return f
}

// run makes n calls one after the other and returns how many succeeded
// and the attempts that reached each backend.
func (f *fleet) run(t *testing.T, n int) (ok int, attempts [3]int64) {
	t.Helper()
	var before [3]int64
	for i, b := range f.backends {
		before[i] = b.calls.Load()
	}
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := f.client.Idempotent(ctx, &pb.PingRequest{Payload: "x"}); err == nil {
			ok++
		}
		cancel()
	}
	for i, b := range f.backends {
		attempts[i] = b.calls.Load() - before[i]
	}
	return ok, attempts
}

func sum(a [3]int64) int64 { return a[0] + a[1] + a[2] }

// TestOneFailingBackend: of three backends, the first fails every call.
// With the outlier policy it is ejected after its first few failures and
// then gets no call; without it, it keeps a third of the first attempts,
// every one of them retried.
func TestOneFailingBackend(t *testing.T) {
	for _, tc := range []struct {
		name         string
		opts         []failsoft.Option
		n            int
		maxBad       int64   // attempts that reach the failing backend
		maxPerCall   float64 // attempts per call
		minSuccesses float64
	}{
		{"outlier ejection (default)", nil, 300, 10, 1.05, 0.99},
		// The control: about every third first attempt fails, and is
		// retried after a backoff, so it makes fewer calls. A new picker
		// starts round_robin at a random backend, so a retry now and then
		// lands on the failing one again: about 1.5 attempts per call.
		{"without", []failsoft.Option{failsoft.WithoutOutlierEjection()}, 60, 60, 2, 0.99},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFleet(t, tc.opts...)
			f.backends[0].mode.Store(failing)
			n := tc.n
			ok, attempts := f.run(t, n)
			success, perCall := float64(ok)/float64(n), float64(sum(attempts))/float64(n)
			t.Logf("%d calls: success %.3f at %.3f attempts per call; attempts per backend %v", n, success, perCall, attempts)
			if success < tc.minSuccesses || perCall > tc.maxPerCall || attempts[0] > tc.maxBad {
				t.Errorf("success %.3f (want >= %.2f) at %.3f attempts per call (want <= %.2f), %d attempts at the failing backend (want <= %d)",
					success, tc.minSuccesses, perCall, tc.maxPerCall, attempts[0], tc.maxBad)
			}
			if tc.opts != nil && attempts[0] < int64(n/5) {
				t.Errorf("without ejection the failing backend got only %d attempts: the control does not control", attempts[0])
			}
		})
	}
}

// TestFleetWideOverload: every backend sheds 40% of its calls as plain
// UNAVAILABLE, with runs of five failures. No backend is ejected: each
// keeps its third of the attempts. Ejecting one would move its load onto
// siblings that are shedding already. The control keeps each backend to
// its share the same way, so the shares are what round_robin gives.
func TestFleetWideOverload(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []failsoft.Option
	}{
		{"outlier ejection (default)", nil},
		{"without", []failsoft.Option{failsoft.WithoutOutlierEjection()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFleet(t, tc.opts...)
			for _, b := range f.backends {
				b.mode.Store(shedding)
			}
			const n = 300
			ok, attempts := f.run(t, n)
			t.Logf("%d calls: %d succeeded, attempts per backend %v", n, ok, attempts)
			for i, a := range attempts {
				if a*4 < sum(attempts) {
					t.Errorf("backend %d got %d of %d attempts: ejected while every backend sheds alike", i, a, sum(attempts))
				}
			}
			if sum(attempts) < n {
				t.Errorf("%d attempts for %d calls", sum(attempts), n)
			}
		})
	}
}

// TestChildPolicies: the SubConns the policy gives its child reach
// grpc-go as its own, whichever the child: calls succeed, and a child
// that spreads calls keeps the failing backend out.
func TestChildPolicies(t *testing.T) {
	for _, tc := range []struct {
		child   string
		spreads bool
	}{
		{"round_robin", true},
		{"least_request_experimental", true},
		{"pick_first", false},
	} {
		t.Run(tc.child, func(t *testing.T) {
			f := newFleet(t, failsoft.WithLoadBalancing(`[{"failsoft_outlier":{"childPolicy":[{"`+tc.child+`":{}}]}}]`))
			if ok, attempts := f.run(t, 30); ok != 30 || sum(attempts) != 30 {
				t.Fatalf("healthy: %d of 30 calls succeeded, attempts per backend %v", ok, attempts)
			}
			if !tc.spreads {
				return
			}
			f.backends[0].mode.Store(failing)
			ok, attempts := f.run(t, 100)
			t.Logf("one failing: %d of 100 calls succeeded, attempts per backend %v", ok, attempts)
			if ok != 100 || attempts[0] > 10 {
				t.Errorf("one failing: %d of 100 calls succeeded, %d attempts at the failing backend (want <= 10)", ok, attempts[0])
			}
		})
	}
}

// TestHealedBackendIsReadmitted: a failing backend is ejected; once it
// heals and its ejection ends, it gets its share again. The ejection is
// short, so that the test waits little, and the latency rule is off, so
// that only failures decide.
func TestHealedBackendIsReadmitted(t *testing.T) {
	f := newFleet(t, failsoft.WithLoadBalancing(`[{"failsoft_outlier":{"baseEjectionTime":"100ms","latencyEjection":{"ratio":0},"childPolicy":[{"round_robin":{}}]}}]`))
	f.backends[0].mode.Store(failing)
	if ok, attempts := f.run(t, 30); ok != 30 || attempts[0] > 10 {
		t.Fatalf("while failing: %d of 30 calls succeeded, %d attempts at the failing backend", ok, attempts[0])
	}
	f.backends[0].mode.Store(healthy)
	// Readmission waits for the ejection to end: make calls until the
	// healed backend serves one, or give up after 10 s.
	healed := f.backends[0].calls.Load()
	deadline := time.Now().Add(10 * time.Second)
	for f.backends[0].calls.Load() == healed {
		if time.Now().After(deadline) {
			t.Fatal("the healed backend was not readmitted within 10 s")
		}
		f.run(t, 10)
	}
	const n = 300
	ok, attempts := f.run(t, n)
	t.Logf("after the heal, %d calls: %d succeeded, attempts per backend %v", n, ok, attempts)
	if ok != n || attempts[0] < n/4 || sum(attempts) != n {
		t.Errorf("after the heal: %d of %d calls succeeded, attempts per backend %v: want all, with about a third at the healed one and no retries", ok, n, attempts)
	}
}

// TestSlowBackend: one backend of three answers 50 ms late, the others at
// once. After a warm-up in which it serves its share, it is ejected and
// gets almost no calls.
func TestSlowBackend(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    []failsoft.Option
		n       int
		ejected bool
	}{
		{"outlier ejection (default)", nil, 300, true},
		// The control makes fewer calls: every third takes 50 ms.
		{"without", []failsoft.Option{failsoft.WithoutOutlierEjection()}, 60, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFleet(t, tc.opts...)
			f.backends[2].mode.Store(slow)
			// Warm-up: the latency rule needs ten calls at the slow
			// backend and an interval's end (1 s). Until 100 calls in a
			// row miss it, or 10 s.
			deadline := time.Now().Add(10 * time.Second)
			warm := 0
			for tc.ejected {
				if time.Now().After(deadline) {
					t.Fatalf("the slow backend is still picked after 10 s: %d calls", f.backends[2].calls.Load())
				}
				_, attempts := f.run(t, 100)
				warm += 100
				if attempts[2] == 0 {
					break
				}
			}
			n := tc.n
			start := time.Now()
			ok, attempts := f.run(t, n)
			t.Logf("after %d warm-up calls (%d at the slow backend), %d calls in %v: %d succeeded, attempts per backend %v",
				warm, f.backends[2].calls.Load()-attempts[2], n, time.Since(start).Round(time.Millisecond), ok, attempts)
			if ok != n {
				t.Errorf("%d of %d calls succeeded", ok, n)
			}
			if tc.ejected && attempts[2] > int64(n/50) {
				t.Errorf("the slow backend got %d of %d calls after the warm-up, want at most %d", attempts[2], n, n/50)
			}
			if !tc.ejected && attempts[2] < int64(n/4) {
				t.Errorf("without ejection the slow backend got only %d of %d calls: the control does not control", attempts[2], n)
			}
		})
	}
}

// TestBadConfigIsRefused: a configuration of the policy given with
// WithLoadBalancing is checked when the client is made, and the error
// names the field.
func TestBadConfigIsRefused(t *testing.T) {
	dopts, err := failsoft.DialOptions(failsoft.WithoutTelemetry(),
		failsoft.WithLoadBalancing(`[{"failsoft_outlier":{"maxEjectionPercent":150}}]`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = grpc.NewClient("passthrough:///x", append(dopts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err == nil || !strings.Contains(err.Error(), "failsoft: outlier: maxEjectionPercent: want 0 to 100, got 150") {
		t.Fatalf("NewClient error %v, want one naming maxEjectionPercent", err)
	}
	if _, err := failsoft.DialOptions(failsoft.WithoutOutlierEjection(), failsoft.WithoutOutlierEjection()); err == nil ||
		!strings.Contains(err.Error(), "failsoft.WithoutOutlierEjection: given twice") {
		t.Fatalf("WithoutOutlierEjection twice: error %v", err)
	}
	if outlier.Name != "failsoft_outlier" {
		t.Fatal("the registered name is part of the service-config API")
	}
}
