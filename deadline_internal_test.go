package failsoft

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/deadline"
	"github.com/failsoft/failsoft/interceptors/fallback"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/retry"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// TestAttemptsCarryTheCallDeadline: the deadline layer leaves the call's
// deadline to the retry layer, which sets it on each attempt's context
// together with the attempt's own timeout. Every attempt must still end by
// the call's deadline (the same instant for all of them, not one reset per
// attempt), and by its per-attempt timeout when that comes first.
func TestAttemptsCarryTheCallDeadline(t *testing.T) {
	noWait := WithRetry(retry.WithRand(func() float64 { return 0 }))
	for _, tc := range []struct {
		name    string
		opts    []Option
		method  string
		caller  time.Duration // the caller's own timeout; 0: none
		timeout time.Duration // the call's timeout from the policy or default
		attempt time.Duration // the per-attempt timeout; 0: none
	}{
		{name: "default timeout", opts: []Option{noWait, WithDeadline(deadline.WithDefaultTimeout(3 * time.Second))},
			method: policytestv1.PlainService_Idempotent_FullMethodName, timeout: 3 * time.Second},
		{name: "policy and per-attempt timeouts", opts: []Option{noWait},
			method: policytestv1.TunedService_Override_FullMethodName, timeout: 2 * time.Second, attempt: 500 * time.Millisecond},
		{name: "caller deadline earliest", opts: []Option{noWait},
			method: policytestv1.TunedService_Override_FullMethodName, caller: 300 * time.Millisecond},
		{name: "without retry", opts: []Option{WithoutRetry(), WithDeadline(deadline.WithDefaultTimeout(3 * time.Second))},
			method: policytestv1.PlainService_Idempotent_FullMethodName, timeout: 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := build(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			var deadlines []time.Time
			var attempts []int
			invoker := func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
				d, ok := ctx.Deadline()
				if !ok {
					t.Error("an attempt was sent without a deadline")
				}
				deadlines = append(deadlines, d)
				attempts = append(attempts, observe.AttemptFrom(ctx).N)
				if len(deadlines) == 1 {
					return status.Error(codes.Unavailable, "first attempt fails")
				}
				return nil
			}
			ctx := context.Background()
			start := time.Now()
			if tc.caller > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.caller)
				defer cancel()
			}
			err = chainInvoker(s, invoker)(ctx, tc.method, &policytestv1.PingRequest{}, &policytestv1.PingResponse{}, idleConn(t))
			end := time.Now()
			retried := tc.name != "without retry"
			switch {
			case retried && err != nil:
				t.Fatalf("call failed: %v", err)
			case !retried && status.Code(err) != codes.Unavailable:
				t.Fatalf("call without retries: %v, want the attempt's UNAVAILABLE", err)
			}
			want := 2
			if !retried {
				want = 1
			}
			if len(deadlines) != want {
				t.Fatalf("%d attempts, want %d", len(deadlines), want)
			}
			if retried && attempts[1] != 2 {
				t.Errorf("the second attempt's context says attempt %d", attempts[1])
			}
			for i, d := range deadlines {
				// The attempt ends by the earliest of the caller's
				// deadline, the call's timeout and its own timeout, each
				// counted from when it started. The last attempt (Override
				// has two) has no timeout of its own: nothing follows it.
				var lo, hi time.Time
				switch {
				case tc.caller > 0:
					lo, hi = start.Add(tc.caller), end.Add(tc.caller)
				case tc.attempt > 0 && i == 0:
					lo, hi = start.Add(tc.attempt), end.Add(tc.attempt)
				default:
					lo, hi = start.Add(tc.timeout), end.Add(tc.timeout)
				}
				if d.Before(lo) || d.After(hi) {
					t.Errorf("attempt %d: deadline %v after the start, want between %v and %v", i+1, d.Sub(start), lo.Sub(start), hi.Sub(start))
				}
			}
			if retried && tc.attempt == 0 && !deadlines[0].Equal(deadlines[1]) {
				t.Errorf("the attempts' deadlines differ by %v: the call's deadline must be one instant", deadlines[1].Sub(deadlines[0]))
			}
		})
	}
}

// idleConn is a connection that is never used to send: the layers only
// read its target.
func idleConn(t *testing.T) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///idle", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// TestPendingDeadlinePassedStopsRetries: once the call's deadline (kept
// off the caller's context) has passed, a failed attempt is not retried,
// and the retry layer says why.
func TestPendingDeadlinePassedStopsRetries(t *testing.T) {
	var reasons []string
	obs := observe.Func(func(_ context.Context, e observe.Event) {
		if e.Kind == observe.RetryStopped {
			reasons = append(reasons, e.Reason)
		}
	})
	fc := clock.NewFake(time.Now())
	s, err := build([]Option{WithObserver(obs), WithoutTelemetry(), WithClock(fc),
		WithDeadline(deadline.WithDefaultTimeout(time.Hour))})
	if err != nil {
		t.Fatal(err)
	}
	sent := 0
	invoker := func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
		sent++
		// The attempt outlives the call's deadline, and its server says so.
		fc.Advance(2 * time.Hour)
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	}
	err = chainInvoker(s, invoker)(context.Background(), policytestv1.PlainService_Idempotent_FullMethodName,
		&policytestv1.PingRequest{}, &policytestv1.PingResponse{}, idleConn(t))
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("call: %v, want DEADLINE_EXCEEDED", err)
	}
	if sent != 1 {
		t.Errorf("%d attempts sent, want 1", sent)
	}
	if len(reasons) != 1 || reasons[0] != "deadline" {
		t.Errorf("retry stopped for %q, want [deadline]", reasons)
	}
	if errors.Is(err, context.Canceled) {
		t.Error("the error says cancelled")
	}
}

// TestFallbackRunsWithinTheCallDeadline: the call's deadline, which the
// deadline layer hands to the retry layer rather than to the context,
// still bounds a fallback that runs after the retries failed.
func TestFallbackRunsWithinTheCallDeadline(t *testing.T) {
	var fallbackDeadline time.Time
	var hadDeadline bool
	fb := fallback.WithFunc(policytestv1.PlainService_Idempotent_FullMethodName,
		func(ctx context.Context, _ string, _, _ any, _ error) error {
			fallbackDeadline, hadDeadline = ctx.Deadline()
			return nil
		})
	s, err := build([]Option{
		WithoutTelemetry(),
		WithRetry(retry.WithRand(func() float64 { return 0 })),
		WithDeadline(deadline.WithDefaultTimeout(3 * time.Second)),
		WithFallback(fb),
	})
	if err != nil {
		t.Fatal(err)
	}
	invoker := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
		return status.Error(codes.Unavailable, "down")
	}
	start := time.Now()
	err = chainInvoker(s, invoker)(context.Background(), policytestv1.PlainService_Idempotent_FullMethodName,
		&policytestv1.PingRequest{}, &policytestv1.PingResponse{}, idleConn(t))
	end := time.Now()
	if err != nil {
		t.Fatalf("the fallback did not answer: %v", err)
	}
	if !hadDeadline || fallbackDeadline.Before(start.Add(3*time.Second)) || fallbackDeadline.After(end.Add(3*time.Second)) {
		t.Errorf("the fallback ran with deadline %v (set: %v), want the call's, 3 s after the start", fallbackDeadline.Sub(start), hadDeadline)
	}
}
