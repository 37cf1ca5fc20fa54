package throttle

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"pgregory.net/rapid"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/internal/testserver"
	"github.com/failsoft/failsoft/interceptors/outcome"
)

// The scenarios drive the throttle with the library's defaults against a
// simulated server, on a fake clock and seeded randomness, and check what
// reaches the server in each failure mode.

// simulation is one run: calls at a steady rate, each answered by answer.
type simulation struct {
	clk    *clock.Fake
	start  time.Time
	th     *Interceptor
	unary  grpc.UnaryClientInterceptor
	cc     *grpc.ClientConn
	answer func(at time.Duration) error

	calls, sent, served, rejected int
	lastRejection                 time.Duration
}

func newSimulation(t *rapid.T, cc *grpc.ClientConn, answer func(time.Duration) error, opts ...Option) *simulation {
	seed := rapid.Uint64().Draw(t, "seed")
	s := &simulation{clk: clock.NewFake(epoch), cc: cc, answer: answer}
	s.start = s.clk.Now()
	th, err := New(append([]Option{WithClock(s.clk), WithRand(rand.New(rand.NewPCG(seed, 1)).Float64)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	s.th, s.unary = th, th.UnaryClientInterceptor()
	return s
}

func (s *simulation) now() time.Duration { return s.clk.Now().Sub(s.start) }

// run makes rate calls a second for d.
func (s *simulation) run(rate int, d time.Duration) {
	end := s.now() + d
	for s.now() < end {
		s.calls++
		err := s.unary(context.Background(), "/svc.v1.S/M", nil, nil, s.cc,
			func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
				s.sent++
				err := s.answer(s.now())
				if err == nil {
					s.served++
				}
				return err
			})
		if r, ok := outcome.AsRejection(err); ok && r.Layer == Layer {
			s.rejected++
			s.lastRejection = s.now()
		}
		s.clk.Advance(time.Second / time.Duration(rate))
	}
}

var signals = map[string]func() error{
	"RESOURCE_EXHAUSTED": func() error { return status.Error(codes.ResourceExhausted, "busy") },
	"pushback":           func() error { return outcome.MarkOverloaded(status.Error(codes.Unavailable, "busy")) },
	"UNAVAILABLE":        func() error { return status.Error(codes.Unavailable, "overflow") },
}

// capacity returns a server that serves perSecond calls a second, in
// slices of 100 ms (as a concurrency limiter with a short queue), and
// rejects the rest at once with signal.
func capacity(perSecond int, signal func() error) func(time.Duration) error {
	const slice = 100 * time.Millisecond
	var cur time.Duration
	served := 0
	return func(at time.Duration) error {
		if s := at / slice * slice; s != cur {
			cur, served = s, 0
		}
		if served >= perSecond/int(time.Second/slice) {
			return signal()
		}
		served++
		return nil
	}
}

// TestScenarioOverload: a server offered 1.5 to 5 times its capacity,
// whatever signal its rejections carry, stays busy (goodput >= 90 % of a
// plain client's), and beyond K = 2 times its capacity the client sheds
// the excess itself, so that about K times what it serves reaches it.
// With failures counted as accepts, plain UNAVAILABLE is not shed.
func TestScenarioOverload(t *testing.T) {
	cc := testserver.Dial(t, "passthrough:///overloaded")
	for name, signal := range signals {
		for _, rejects := range []bool{true, false} {
			t.Run(name+map[bool]string{true: "", false: " failures as accepts"}[rejects], func(t *testing.T) {
				rapid.Check(t, func(rt *rapid.T) {
					const served = 100 // a second
					factor := rapid.Float64Range(1.5, 5).Draw(rt, "overload")
					s := newSimulation(rt, cc, capacity(served, signal), WithFailuresAsRejects(rejects))
					s.run(int(factor*served), 10*time.Second)
					// A plain client: the same calls without throttling.
					plain := newSimulation(rt, cc, capacity(served, signal), WithMaxProbability(0))
					plain.run(int(factor*served), 10*time.Second)
					if s.served < plain.served*9/10 {
						rt.Fatalf("goodput %d, a plain client's %d, at %.2fx: %d calls, %d sent, %d rejected, state %+v", s.served, plain.served, factor, s.calls, s.sent, s.rejected, s.th.State(cc.Target()))
					}
					shed := name != "UNAVAILABLE" || rejects
					switch {
					case shed && factor > 2.5 && float64(s.sent) > 2.3*float64(plain.served):
						rt.Fatalf("%d attempts reached a server serving %d at %.1fx overload, want at most 2.3x", s.sent, plain.served, factor)
					case shed && factor < 2 && s.rejected > 0:
						rt.Fatalf("%d of %d calls rejected locally at %.1fx overload, want none below K", s.rejected, s.calls, factor)
					case !shed && s.rejected > 0:
						rt.Fatalf("%d calls rejected with failures as accepts", s.rejected)
					}
				})
			})
		}
	}
}

// TestScenarioNoShedding: a dead target, random failures (3 %, 20 %) and
// one failing method of three are not overload: the throttle sends every
// call.
func TestScenarioNoShedding(t *testing.T) {
	cc := testserver.Dial(t, "passthrough:///not-overloaded")
	unavailable := status.Error(codes.Unavailable, "down")
	flaky := func(p float64, r *rand.Rand) func(time.Duration) error {
		return func(time.Duration) error {
			if r.Float64() < p {
				return unavailable
			}
			return nil
		}
	}
	rapid.Check(t, func(rt *rapid.T) {
		r := rand.New(rand.NewPCG(rapid.Uint64().Draw(rt, "server seed"), 2))
		n := 0
		answers := map[string]func(time.Duration) error{
			"dead":          func(time.Duration) error { return unavailable },
			"3% flaky":      flaky(0.03, r),
			"20% transient": flaky(0.2, r),
			"one bad method": func(time.Duration) error {
				n++ // calls go round three methods; the third fails
				if n%3 == 0 {
					return status.Error(codes.Internal, "bug")
				}
				return nil
			},
		}
		name := rapid.SampledFrom([]string{"dead", "3% flaky", "20% transient", "one bad method"}).Draw(rt, "mode")
		s := newSimulation(rt, cc, answers[name])
		s.run(rapid.IntRange(10, 500).Draw(rt, "rate"), 5*time.Second)
		if s.rejected != 0 {
			rt.Fatalf("%s: %d of %d calls rejected locally", name, s.rejected, s.calls)
		}
	})
}

// TestScenarioOutageThenHeal: after healthy traffic of any length (down to
// a single call), an outage of any length is not held against the target:
// within a second of the heal, no call is rejected locally.
func TestScenarioOutageThenHeal(t *testing.T) {
	cc := testserver.Dial(t, "passthrough:///heals")
	rapid.Check(t, func(rt *rapid.T) {
		healthy := time.Duration(rapid.IntRange(0, 30_000).Draw(rt, "healthy ms")) * time.Millisecond
		outage := time.Duration(rapid.IntRange(1, 60).Draw(rt, "outage seconds")) * time.Second
		s := newSimulation(rt, cc, func(at time.Duration) error {
			if at >= healthy && at < healthy+outage {
				return status.Error(codes.Unavailable, "down")
			}
			return nil
		})
		rate := rapid.IntRange(10, 1000).Draw(rt, "rate")
		s.run(rate, healthy+outage+5*time.Second)
		if s.rejected > 0 && s.lastRejection > healthy+outage+time.Second {
			rt.Fatalf("%d calls rejected locally, the last %v after the heal", s.rejected, s.lastRejection-healthy-outage)
		}
	})
}
