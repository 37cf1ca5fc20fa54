package failsoft

import (
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/deadline"
	"github.com/failsoft/failsoft/interceptors/retry"
	"github.com/failsoft/failsoft/internal/chain"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// recordNow is an innermost layer that records the clock reading each
// attempt carries in chain.State, and the attempt's number, failing the
// first attempt.
type recordNow struct {
	nows     *[]time.Time
	attempts *[]int
}

func (r recordNow) Unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, next chain.UnaryNext, opts ...grpc.CallOption) error {
	*r.nows = append(*r.nows, next.Now)
	*r.attempts = append(*r.attempts, next.AttemptOf(ctx).N)
	if len(*r.nows) == 1 {
		return status.Error(codes.Unavailable, "first attempt fails")
	}
	return next.Invoke(ctx, method, req, reply, cc, opts...)
}

// TestStateNow: the clock reading outer layers leave in chain.State is a
// system clock reading from the first attempt's start, and never reaches a
// later attempt, which must read the clock itself; nor does the State's
// mark of the first attempt.
func TestStateNow(t *testing.T) {
	// A fake clock that agrees with the system clock when the test starts,
	// so that the deadlines it gives do not expire the contexts at once.
	// With no jitter the retry waits for no backoff.
	fake := clock.NewFake(time.Now())
	for _, tc := range []struct {
		name          string
		deadlineClock clock.Clock
		retryClock    clock.Clock
		method        string
		wantFirst     bool
	}{
		{"system clocks", clock.System(), clock.System(), policytestv1.PlainService_Idempotent_FullMethodName, true},
		{"system clocks, per-attempt timeout", clock.System(), clock.System(), policytestv1.TunedService_Override_FullMethodName, true},
		// The retry layer reads the clock for the attempt's timeout, and
		// passes that on.
		{"deadline on a fake clock, per-attempt timeout", fake, clock.System(), policytestv1.TunedService_Override_FullMethodName, true},
		{"deadline on a fake clock", fake, clock.System(), policytestv1.PlainService_Idempotent_FullMethodName, false},
		{"retry on a fake clock", clock.System(), fake, policytestv1.TunedService_Override_FullMethodName, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dl, err := deadline.New(deadline.WithClock(tc.deadlineClock))
			if err != nil {
				t.Fatal(err)
			}
			rt, err := retry.New(retry.WithClock(tc.retryClock), retry.WithRand(func() float64 { return 0 }))
			if err != nil {
				t.Fatal(err)
			}
			var layers []chain.Unary
			for _, l := range []struct {
				kind chain.Kind
				v    any
			}{{chain.DeadlinePending, dl}, {chain.Retry, rt}} {
				layer, err := chain.Lookup(l.kind, l.v)
				if err != nil {
					t.Fatal(err)
				}
				layers = append(layers, layer.Unary)
			}
			var nows []time.Time
			var attempts []int
			layers = append(layers, recordNow{&nows, &attempts})
			invoker := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }
			before := time.Now()
			err = chain.NewUnaries(layers...).Start(invoker).Invoke(context.Background(), tc.method, &policytestv1.PingRequest{}, &policytestv1.PingResponse{}, idleConn(t))
			after := time.Now()
			if err != nil {
				t.Fatalf("call failed: %v", err)
			}
			if len(nows) != 2 {
				t.Fatalf("%d attempts, want 2", len(nows))
			}
			switch first := nows[0]; {
			case tc.wantFirst && (first.Before(before) || first.After(after)):
				t.Errorf("first attempt carries %v, want a reading between %v and %v", first, before, after)
			case !tc.wantFirst && !first.IsZero():
				t.Errorf("first attempt carries %v, want none", first)
			}
			if !nows[1].IsZero() {
				t.Errorf("second attempt carries %v, want none", nows[1])
			}
			if !slices.Equal(attempts, []int{1, 2}) {
				t.Errorf("attempts numbered %v, want [1 2]", attempts)
			}
		})
	}
}
