package deadline_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/deadline"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
)

// floorStep is one call, or a wait, in a learned-floor scenario.
type floorStep struct {
	wait    time.Duration // advance the clock by this first
	method  string        // mPlain when empty
	budget  time.Duration // the caller's deadline, from now
	takes   time.Duration // how long the target takes, when sent
	fails   bool          // the target answers UNAVAILABLE
	refused bool          // want the call failed fast, unsent
}

// rep repeats a step n times.
func rep(n int, s floorStep) []floorStep {
	out := make([]floorStep, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func steps(groups ...[]floorStep) []floorStep {
	var out []floorStep
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

// TestLearnedFloor: a unary call whose budget is shorter than every recent
// success of its method (at least 3 of them, within the last 10-20 s)
// fails fast, unsent, as a deadline Rejection; other calls are sent.
func TestLearnedFloor(t *testing.T) {
	ok20 := floorStep{budget: 200 * time.Millisecond, takes: 20 * time.Millisecond}
	short := floorStep{budget: 10 * time.Millisecond, takes: 20 * time.Millisecond}
	refused := short
	refused.refused = true
	tests := []struct {
		name  string
		opts  []deadline.Option
		steps []floorStep
	}{
		{name: "no floor before any success", steps: rep(5, short)},
		{name: "learned after 3 successes", steps: steps(rep(3, ok20), []floorStep{refused,
			{budget: 20 * time.Millisecond, takes: 20 * time.Millisecond},
			{budget: 19 * time.Millisecond, refused: true},
			ok20,
		})},
		{name: "2 successes are not enough", steps: steps(rep(2, ok20), []floorStep{short})},
		{name: "failures are not answers", steps: steps(rep(3, floorStep{budget: 200 * time.Millisecond, takes: 20 * time.Millisecond, fails: true}), []floorStep{short})},
		{name: "a faster success lowers it at once", steps: steps(rep(3, ok20), []floorStep{
			{budget: 200 * time.Millisecond, takes: 5 * time.Millisecond}, short,
		})},
		{name: "once settled, one success in eight is timed", steps: steps(rep(3, ok20), []floorStep{
			{wait: 1, budget: 200 * time.Millisecond, takes: 5 * time.Millisecond}, refused,
			{wait: 7, budget: 200 * time.Millisecond, takes: 5 * time.Millisecond}, short,
		})},
		{name: "until settled, every success is timed", steps: steps(rep(2, ok20), []floorStep{
			{wait: 1, budget: 200 * time.Millisecond, takes: 20 * time.Millisecond}, refused,
		})},
		{name: "a slower success does not raise it", steps: steps(rep(3, ok20), []floorStep{
			{budget: 200 * time.Millisecond, takes: 150 * time.Millisecond}, refused,
			{budget: 100 * time.Millisecond, takes: 150 * time.Millisecond},
		})},
		{name: "the previous period still counts", steps: steps(rep(3, ok20), []floorStep{
			{wait: 10 * time.Second, budget: 10 * time.Millisecond, refused: true},
			{wait: 9 * time.Second, budget: 10 * time.Millisecond, refused: true},
		})},
		{name: "forgotten after two periods without successes", steps: steps(rep(3, ok20), []floorStep{
			{wait: 20 * time.Second, budget: 10 * time.Millisecond, takes: 20 * time.Millisecond},
		})},
		{name: "a later period learns anew", steps: steps(rep(3, ok20), []floorStep{
			{wait: 10 * time.Second, budget: 200 * time.Millisecond, takes: 50 * time.Millisecond},
		}, rep(2, floorStep{budget: 200 * time.Millisecond, takes: 50 * time.Millisecond}), []floorStep{
			{wait: 10 * time.Second, budget: 30 * time.Millisecond, refused: true},
			{budget: 50 * time.Millisecond, takes: 50 * time.Millisecond},
		})},
		{name: "per method", steps: steps(rep(3, ok20), []floorStep{
			{method: mTimeout, budget: 10 * time.Millisecond, takes: 20 * time.Millisecond},
		})},
		{name: "a policy min_budget is the method's own minimum", steps: steps(
			rep(3, floorStep{method: mNoMin, budget: 200 * time.Millisecond, takes: 20 * time.Millisecond}),
			rep(3, floorStep{method: mMin, budget: time.Second, takes: 300 * time.Millisecond}),
			[]floorStep{
				{method: mNoMin, budget: 10 * time.Millisecond, takes: 20 * time.Millisecond},
				{method: mMin, budget: 150 * time.Millisecond, takes: 300 * time.Millisecond},
			})},
		{name: "with the interceptor minimum, the larger applies", opts: []deadline.Option{deadline.WithMinBudget(5 * time.Millisecond)}, steps: steps(rep(3, ok20), []floorStep{
			refused, {budget: 4 * time.Millisecond, refused: true},
		})},
		{name: "switched off", opts: []deadline.Option{deadline.WithLearnedFloor(false)}, steps: steps(rep(3, ok20), []floorStep{short})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := floorClock()
			rec := &recorder{}
			dl, err := deadline.New(append([]deadline.Option{
				deadline.WithClock(fc), deadline.WithResolver(testResolver(t)), deadline.WithObserver(rec),
			}, tt.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			unary := dl.UnaryClientInterceptor()
			for i, s := range tt.steps {
				fc.Advance(s.wait)
				method := cmpOr(s.method, mPlain)
				ctx, cancel := context.WithDeadline(context.Background(), fc.Now().Add(s.budget))
				sent := false
				err := unary(ctx, method, nil, nil, nil, func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
					sent = true
					if s.takes > s.budget {
						fc.Advance(s.budget)
						return status.Error(codes.DeadlineExceeded, "context deadline exceeded")
					}
					fc.Advance(s.takes)
					if s.fails {
						return status.Error(codes.Unavailable, "down")
					}
					return nil
				})
				cancel()
				if sent == s.refused {
					t.Fatalf("step %d (%+v): sent %v, want %v (err %v)", i, s, sent, !s.refused, err)
				}
				if !s.refused {
					continue
				}
				rej, ok := outcome.AsRejection(err)
				if !ok || rej.Layer != deadline.Layer || status.Code(err) != codes.DeadlineExceeded || !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("step %d: err = %v, want a deadline Rejection with DEADLINE_EXCEEDED", i, err)
				}
				if !strings.Contains(rej.Message, "none of its recent calls succeeded in less than") &&
					!strings.Contains(rej.Message, "the minimum is") {
					t.Errorf("step %d: message %q does not say why", i, rej.Message)
				}
				events := rec.all()
				if e := events[len(events)-1]; e.Kind != observe.DeadlineFailFast || e.Err != err {
					t.Errorf("step %d: last event %+v, want DeadlineFailFast carrying the error", i, e)
				}
			}
		})
	}
}

// floorClock is a fake clock ahead of the system clock, so that no
// context's deadline passes while a test runs, on a whole second, so that
// every success is timed until a step moves it off a multiple of 8 ns.
func floorClock() *clock.Fake {
	return clock.NewFake(time.Now().Add(time.Hour).Truncate(time.Second))
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestLearnedFloorMessage: the rejection names the budget, the method and
// the floor.
func TestLearnedFloorMessage(t *testing.T) {
	fc := floorClock()
	dl, err := deadline.New(deadline.WithClock(fc))
	if err != nil {
		t.Fatal(err)
	}
	unary := dl.UnaryClientInterceptor()
	call := func(budget, takes time.Duration) error {
		ctx, cancel := context.WithDeadline(context.Background(), fc.Now().Add(budget))
		defer cancel()
		return unary(ctx, mPlain, nil, nil, nil, func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
			fc.Advance(takes)
			return nil
		})
	}
	for range 3 {
		if err := call(time.Second, 20*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	err = call(10*time.Millisecond, 0)
	want := "failsoft: deadline: 10ms of budget left for " + mPlain + ", and none of its recent calls succeeded in less than 20ms; the call was not sent"
	if status.Convert(err).Message() != want {
		t.Errorf("message %q, want %q", status.Convert(err).Message(), want)
	}
}

// TestLearnedFloorSparesStreams: streams have no floor; their length says
// nothing about how fast the target answers.
func TestLearnedFloorSparesStreams(t *testing.T) {
	fc := floorClock()
	dl, err := deadline.New(deadline.WithClock(fc))
	if err != nil {
		t.Fatal(err)
	}
	unary, stream := dl.UnaryClientInterceptor(), dl.StreamClientInterceptor()
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour)
		err := unary(ctx, mPlain, nil, nil, nil, func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
			fc.Advance(time.Second)
			return nil
		})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), fc.Now().Add(10*time.Millisecond))
	defer cancel()
	opened := false
	_, err = stream(ctx, &grpc.StreamDesc{ServerStreams: true}, nil, mPlain, func(ctx context.Context, _ *grpc.StreamDesc, _ *grpc.ClientConn, _ string, _ ...grpc.CallOption) (grpc.ClientStream, error) {
		opened = true
		return nil, status.Error(codes.Unavailable, "down")
	})
	if !opened || status.Code(err) != codes.Unavailable {
		t.Errorf("stream opened %v, err %v; want it opened, whatever the unary floor", opened, err)
	}
}

// TestLearnedFloorConcurrent: calls to many methods from several
// goroutines at once learn their floors without a race, and a method's
// floor never exceeds its calls' latency: with every call given an hour,
// none is refused.
func TestLearnedFloorConcurrent(t *testing.T) {
	dl, err := deadline.New()
	if err != nil {
		t.Fatal(err)
	}
	unary := dl.UnaryClientInterceptor()
	var wg sync.WaitGroup
	var refused atomic.Int64
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
				method := fmt.Sprintf("/t.v1.S/M%d", (g+i)%20)
				err := unary(ctx, method, nil, nil, nil, func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil })
				cancel()
				if err != nil {
					refused.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := refused.Load(); n != 0 {
		t.Errorf("%d calls with an hour left were refused", n)
	}
}
