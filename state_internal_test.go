package failsoft

import (
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/retry"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// seen is what an interceptor placed after the suite saw of one attempt.
type seen struct {
	attempt     observe.Attempt
	hasDeadline bool
	remaining   time.Duration
}

// TestAfterTheSuite: an interceptor chained after the suite, which sees
// only the context, finds every attempt on it as the suite's own layers
// do: attempt 1 with its per-attempt timeout too, and a deadline no later
// than the attempt's own.
func TestAfterTheSuite(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    []Option
		method  string
		timeout time.Duration // the per-attempt timeout attempts must carry
	}{
		{"per-attempt timeout", nil, policytestv1.TunedService_Override_FullMethodName, 500 * time.Millisecond},
		{"per-attempt timeout, without telemetry", []Option{WithoutTelemetry()}, policytestv1.TunedService_Override_FullMethodName, 500 * time.Millisecond},
		{"no per-attempt timeout", nil, policytestv1.PlainService_Idempotent_FullMethodName, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := build(append(tc.opts, WithRetry(retry.WithRand(func() float64 { return 0 }))))
			if err != nil {
				t.Fatal(err)
			}
			var got []seen
			after := func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
				d, ok := ctx.Deadline()
				got = append(got, seen{observe.AttemptFrom(ctx), ok, time.Until(d)})
				if len(got) == 1 {
					return status.Error(codes.Unavailable, "first attempt fails")
				}
				return nil
			}
			err = chainInvoker(s, after)(context.Background(), tc.method, &policytestv1.PingRequest{}, &policytestv1.PingResponse{}, idleConn(t))
			if err != nil {
				t.Fatalf("call failed: %v", err)
			}
			var ns []int
			for i, a := range got {
				ns = append(ns, a.attempt.N)
				// The last attempt (Override has two) has no timeout
				// of its own, as nothing could follow it: it carries the
				// call's deadline alone.
				want := tc.timeout
				if i == len(got)-1 {
					want = 0
				}
				if a.attempt.Timeout != want {
					t.Errorf("attempt %d carries timeout %v, want %v", a.attempt.N, a.attempt.Timeout, want)
				}
				if !a.hasDeadline || (want > 0 && a.remaining > want) || (want == 0 && tc.timeout > 0 && a.remaining <= tc.timeout) {
					t.Errorf("attempt %d has deadline %v in %v, want one within %v (none: the call's, later)", a.attempt.N, a.hasDeadline, a.remaining, want)
				}
			}
			if !slices.Equal(ns, []int{1, 2}) {
				t.Errorf("attempts numbered %v, want [1 2]", ns)
			}
		})
	}
}
