package breaker_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/breaker"
)

// TestStress hammers breakers from many goroutines with random outcomes
// while the clock moves and readers take snapshots. Run it with -race; it
// checks that counts stay consistent and that the breaker recovers.
func TestStress(t *testing.T) {
	const goroutines, calls = 16, 400
	var changes atomic.Int64
	h := newHarness(t, breaker.ConsecutiveFailures(3), breaker.FailureRate(0.5), breaker.TimeWindow(10*time.Second),
		breaker.MinimumCalls(10), breaker.SlowCallRate(0.9, time.Second), breaker.HalfOpenProbes(2),
		breaker.OpenFor(100*time.Millisecond, time.Second), breaker.PerMethod(), breaker.WithMaxTargets(3),
		breaker.OnStateChange(func(breaker.Change) { changes.Add(1) }))
	methods := []string{plainMethod, otherMethod, "/failsoft.policytest.v1.PlainService/NoSideEffects", "/x.v1.Y/Z"}
	var wg sync.WaitGroup
	var open atomic.Int64
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for range calls {
				method := methods[rng.IntN(len(methods))]
				code := []codes.Code{codes.OK, codes.OK, codes.Unavailable, codes.ResourceExhausted, codes.Canceled}[rng.IntN(5)]
				err := h.unary(context.Background(), method, nil, nil, h.cc, func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
					if rng.IntN(10) == 0 {
						h.clk.Advance(time.Duration(rng.IntN(300)) * time.Millisecond)
					}
					if code == codes.OK {
						return nil
					}
					return status.Error(code, "x")
				})
				if err != nil && status.Code(err) == codes.Unavailable {
					open.Add(1)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 200 {
			for _, s := range h.ic.Snapshots() {
				if s.Counts.Failures > s.Counts.Requests && s.State == breaker.Closed {
					t.Errorf("snapshot %+v: more failures than requests", s)
				}
			}
		}
	}()
	wg.Wait()
	if changes.Load() == 0 || open.Load() == 0 {
		t.Fatalf("the stress never tripped a breaker: %d changes", changes.Load())
	}
	// Once the target recovers, every breaker closes after its probes.
	h.clk.Advance(time.Minute)
	for _, m := range methods {
		for range 5 {
			if err := h.callMethod(m, codes.OK, 0); err != nil {
				t.Fatalf("%s after recovery: %v", m, err)
			}
		}
	}
	for _, s := range h.ic.Snapshots() {
		if s.State != breaker.Closed {
			t.Errorf("%s did not close: %+v", s.Method, s)
		}
	}
}
