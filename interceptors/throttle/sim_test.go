package throttle

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/outcome"
)

// The simulated overload: a server that can serve `capacity` calls per
// tick of the fake clock and answers the excess at once with
// RESOURCE_EXHAUSTED, and clients that offer a fixed number of logical
// calls per tick, one after another, through the throttle's unary
// interceptor over an invoker that calls the server directly (no network).
// Everything is deterministic: the fake clock moves one second per tick and
// the throttle draws from a seeded source.

type simServer struct {
	capacity int // per tick
	served   int // this tick
	attempts int // reaching the server, in total
}

var errShed = status.Error(codes.ResourceExhausted, "server over capacity")

func (s *simServer) invoke(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
	s.attempts++
	if s.served < s.capacity {
		s.served++
		return nil
	}
	return errShed
}

type simResult struct {
	offered, goodput, attempts, throttled int
}

// simulate runs ticks ticks of offered logical calls per tick against a
// server of the given capacity. Each logical call makes up to maxAttempts
// attempts, retrying at once on RESOURCE_EXHAUSTED, local rejections
// included, as a naive retrying client does. A nil throttle is a plain
// client.
func simulate(t *testing.T, th *Interceptor, h *harness, ticks, offered, capacity, maxAttempts int) simResult {
	t.Helper()
	srv := &simServer{capacity: capacity}
	invoke := grpc.UnaryInvoker(srv.invoke)
	if th != nil {
		unary := th.UnaryClientInterceptor()
		invoke = func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
			return unary(ctx, method, req, reply, cc, srv.invoke, opts...)
		}
	}
	var res simResult
	for range ticks {
		srv.served = 0
		for range offered {
			res.offered++
			for range maxAttempts {
				err := invoke(context.Background(), "/svc.v1.S/M", nil, nil, h.cc)
				if err == nil {
					res.goodput++
					break
				}
				if _, ok := err.(*outcome.Rejection); ok {
					res.throttled++
				}
				if status.Code(err) != codes.ResourceExhausted {
					t.Fatalf("unexpected error %v", err)
				}
			}
		}
		h.clk.Advance(time.Second)
	}
	res.attempts = srv.attempts
	return res
}

func TestSimulatedOverload(t *testing.T) {
	const (
		ticks    = 360 // six minutes of fake time: three default windows
		capacity = 40  // calls the server serves per tick
	)
	tests := []struct {
		name        string
		offered     int // logical calls per tick
		maxAttempts int
		k           float64
		// Expectations, per tick, derived in the comments.
		plainAttempts float64 // attempts reaching the server without the throttle
		maxSent       float64 // bound on attempts reaching it with the throttle
	}{
		// C is the capacity, 40 calls a tick.
		//
		// 1.5x capacity, K=2. Each tick adds 1.5C requests and C accepts to
		// the window, so requests - 2*accepts < 0 at every moment: the
		// probability stays 0, the throttle never rejects, and the server
		// sees exactly the offered load and serves its capacity: goodput is
		// 100% of the capacity bound and attempts are 1.0x offered (goal:
		// >= 90%, <= 1.2x). This is the case: a throttle must not
		// cut an overloaded server's goodput as a breaker does.
		{"plain client at 1.5x, K=2", 1.5 * capacity, 1, 2, 1.5 * capacity, 1.5 * capacity},
		// 1.5x capacity, K=1.1: p settles where sent = 1.1*accepted, i.e.
		// 1 - p = 1.1/1.5; sent ~ Binomial(60, 0.73), mean 44, sd 3.4, so
		// in about one tick in eight fewer than C calls get through, short
		// by a few: goodput ~99% of capacity, attempts ~0.73x offered.
		{"plain client at 1.5x, K=1.1", 1.5 * capacity, 1, 1.1, 1.5 * capacity, 1.05 * 1.1 * capacity},
		// 4x capacity, K=2: requests 4C and accepts C a tick give
		// p = 2C/(4C+1), so about 2C calls a tick reach the server (K times
		// its capacity, 0.5x offered; sd 4.5) and at least C always do.
		{"plain client at 4x, K=2", 4 * capacity, 1, 2, 4 * capacity, 1.05 * 2 * capacity},
		// A naive client retrying RESOURCE_EXHAUSTED at once, up to 3
		// attempts: without the throttle the first C calls succeed and
		// each of the other 0.5C tries 3 times: C + 1.5C = 2.5C attempts a
		// tick, 1.67x offered. With the throttle every attempt is a request
		// and only accepted ones are accepts, so the attempts that reach
		// the server still settle near K*accepts = 2C (1.33x offered);
		// the rest of the way to 1.2x is the retry budget's job.
		{"retrying client at 1.5x, K=2", 1.5 * capacity, 3, 2, 2.5 * capacity, 1.05 * 2 * capacity},
		// The same with K=1.1: about 1.1C attempts a tick, 0.73x offered.
		{"retrying client at 1.5x, K=1.1", 1.5 * capacity, 3, 1.1, 2.5 * capacity, 1.05 * 1.1 * capacity},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := rand.New(rand.NewPCG(1, 2))
			h := newHarness(t, WithMultiplier(tc.k), WithRand(src.Float64))

			plain := simulate(t, nil, h, ticks, tc.offered, capacity, tc.maxAttempts)
			got := simulate(t, h.t, h, ticks, tc.offered, capacity, tc.maxAttempts)

			bound := ticks * min(tc.offered, capacity) // capacity-bound goodput
			if plain.goodput != bound || float64(plain.attempts) != tc.plainAttempts*ticks {
				t.Fatalf("plain client: goodput %d (want %d), attempts %d (want %v)", plain.goodput, bound, plain.attempts, tc.plainAttempts*ticks)
			}
			goodput := float64(got.goodput) / float64(bound)
			perOffered := float64(got.attempts) / float64(got.offered)
			perTick := float64(got.attempts) / ticks
			t.Logf("goodput %.1f%% of capacity, attempts %.2fx offered (%.0f a tick; plain client %.2fx), %d throttled",
				100*goodput, perOffered, perTick, float64(plain.attempts)/float64(plain.offered), got.throttled)
			if goodput < 0.9 {
				t.Errorf("goodput %.1f%% of the capacity bound, want at least 90%%", 100*goodput)
			}
			// One tick at the start runs before anything is known.
			if perTick > tc.maxSent+float64(tc.maxAttempts*tc.offered)/ticks {
				t.Errorf("%.1f attempts a tick reached the server, want at most %.1f", perTick, tc.maxSent)
			}
			if tc.maxAttempts == 1 && perOffered > 1.2 {
				t.Errorf("attempts %.2fx the offered load, want at most 1.2x", perOffered)
			}
			if tc.maxAttempts == 1 && tc.k == 2 && tc.offered*2 <= 3*capacity && got.throttled != 0 {
				t.Errorf("%d calls throttled at 1.5x with K=2, want none", got.throttled)
			}
		})
	}
}

// TestSimulatedRecovery: a server that sheds everything for a minute is
// throttled up to the cap, and once it serves again the throttle forgets
// within a window.
func TestSimulatedRecovery(t *testing.T) {
	src := rand.New(rand.NewPCG(3, 4))
	h := newHarness(t, WithRand(src.Float64))
	// A minute of total overload at 50 calls a tick.
	down := simulate(t, h.t, h, 60, 50, 0, 1)
	if s := h.state(); s.Probability != DefaultMaxProbability {
		t.Fatalf("after a minute of refusals: %+v, want the cap", s)
	}
	// The cap keeps about 10% of the calls going.
	if down.attempts < 60*50/20 || down.attempts > 60*50/5 {
		t.Fatalf("%d of %d calls reached a refusing server, want about 10%%", down.attempts, down.offered)
	}
	// Capacity is back, above the offered load. The throttle's own
	// rejections are requests without accepts, so it lets the load back in
	// step by step: were the window replaced at once, each window would
	// take p to 1 - K*(1-p), 0.9 -> 0.8 -> 0.6 -> 0.2 -> 0, so it stops
	// throttling within four windows; the buckets moving on one at a time
	// make it about twice as fast.
	recovered, served, offered := -1, 0, 0
	for tick := range 4 * int(DefaultWindow/time.Second) {
		r := simulate(t, h.t, h, 1, 50, 100, 1)
		served, offered = served+r.goodput, offered+r.offered
		if h.state().Probability == 0 {
			recovered = tick + 1
			break
		}
	}
	if recovered < 0 {
		t.Fatalf("still throttling four windows after recovery: %+v", h.state())
	}
	t.Logf("throttling stopped %d s after the server recovered; %.0f%% of the calls were served meanwhile", recovered, 100*float64(served)/float64(offered))
	after := simulate(t, h.t, h, 120, 50, 100, 1)
	if after.goodput != after.offered || after.throttled != 0 {
		t.Fatalf("after recovery: %+v", after)
	}
}
