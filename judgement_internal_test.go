package failsoft

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/breaker"
	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/deadline"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/retry"
	"github.com/failsoft/failsoft/interceptors/throttle"
)

// TestShortBudgetsOnAFakeClock: the suite's chain, with its defaults, over
// a fake target that answers in 20 ms of fake time, or DEADLINE_EXCEEDED
// when the attempt has less; one caller after another, 9 in 10 with 10 ms
// left (a budget passed on nearly spent), the others with 200 ms, or 6 in
// 10. With the deadline layer's learned floor every 200 ms call succeeds
// and no layer acts. Without it, as a control, the short calls'
// DEADLINE_EXCEEDED make the breaker (9 in 10) or the throttle (6 in 10)
// fail 200 ms calls too.
func TestShortBudgetsOnAFakeClock(t *testing.T) {
	const method = "/failsoft.policytest.v1.PlainService/Idempotent"
	for _, tc := range []struct {
		name  string
		short int // calls in 10 with 10 ms
		floor bool
	}{
		{"90% short, learned floor", 9, true},
		{"90% short, without it", 9, false},
		{"60% short, learned floor", 6, true},
		{"60% short, without it", 6, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Ahead of the system clock, so that no context's deadline
			// passes in real time: the fake target judges budgets.
			fc := clock.NewFake(time.Now().Add(time.Hour).Truncate(time.Second))
			var events [observe.PolicyUnmatched + 1]int
			rnd := rand.New(rand.NewPCG(1, 2))
			s, err := build([]Option{
				WithClock(fc),
				WithoutTelemetry(),
				WithObserver(observe.Func(func(_ context.Context, e observe.Event) {
					if int(e.Kind) < len(events) {
						events[e.Kind]++
					}
				})),
				WithDeadline(deadline.WithLearnedFloor(tc.floor)),
				WithThrottle(throttle.WithRand(rnd.Float64)),
				WithRetry(retry.WithRand(rnd.Float64)),
				WithBreaker(breaker.WithRand(rnd.Float64)),
			})
			if err != nil {
				t.Fatal(err)
			}
			sent := 0
			call := chainInvoker(s, func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
				sent++
				dl, _ := ctx.Deadline()
				if left := dl.Sub(fc.Now()); left < 20*time.Millisecond {
					fc.Advance(left)
					return status.Error(codes.DeadlineExceeded, "context deadline exceeded")
				}
				fc.Advance(20 * time.Millisecond)
				return nil
			})
			cc := overloadConn(t)
			longOK, long := 0, 0
			for i := range 300 {
				fc.Advance(time.Millisecond)
				budget := 10 * time.Millisecond
				if i < 5 || i%10 >= tc.short {
					budget = 200 * time.Millisecond
				}
				ctx, cancel := context.WithDeadline(context.Background(), fc.Now().Add(budget))
				err := call(ctx, method, nil, nil, cc)
				cancel()
				if budget == 200*time.Millisecond {
					long++
					if err == nil {
						longOK++
					}
				}
			}
			t.Logf("200 ms calls: %d of %d succeeded; %d attempts sent for 300 calls; breaker changes %d, throttled %d, failed fast %d",
				longOK, long, sent, events[observe.BreakerState], events[observe.Throttled], events[observe.DeadlineFailFast])
			if tc.floor {
				if longOK != long || events[observe.BreakerState] != 0 || events[observe.Throttled] != 0 {
					t.Errorf("200 ms calls: %d of %d succeeded, breaker changes %d, throttled %d; want all, none, none",
						longOK, long, events[observe.BreakerState], events[observe.Throttled])
				}
				return
			}
			if longOK == long {
				t.Errorf("without the floor, all %d calls of 200 ms succeeded; want the breaker or the throttle to fail some (the case the floor exists for)", long)
			}
		})
	}
}
