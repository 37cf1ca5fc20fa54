//go:build !race

package failsoft

import (
	"context"
	"testing"
	"time"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/failsoft/failsoft/interceptors/telemetry"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// TestSuiteAllocs pins what the whole suite adds to a call whose first
// attempt succeeds: one deadline context unless the caller's deadline is
// the earliest, even when the policy gives both a call timeout and a
// per-attempt timeout, and, for an attempt with a timeout of its own, one
// allocation that carries its observe.Attempt, so that interceptors after
// the suite see the timeout. The layers themselves and their chaining
// allocate nothing, and neither does reading server pushback (a pooled
// trailer holder). The cost ceiling is six allocations.
func TestSuiteAllocs(t *testing.T) {
	cc, err := grpc.NewClient("passthrough:///allocs", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	oneContext := testing.AllocsPerRun(200, func() {
		_, cancel := context.WithDeadline(context.Background(), time.Now().Add(time.Second))
		cancel()
	})
	// The attempt of a call with a per-attempt timeout (TunedService's
	// methods; PlainService's have none).
	const attempt = 1
	withAttempt := oneContext + attempt
	noopTelemetry := WithTelemetry(
		telemetry.WithTracerProvider(tracenoop.NewTracerProvider()),
		telemetry.WithMeterProvider(metricnoop.NewMeterProvider()),
	)
	req, reply := &policytestv1.PingRequest{}, &policytestv1.PingResponse{}
	for _, tc := range []struct {
		name   string
		opts   []Option
		method string
		caller time.Duration // the caller's own timeout; 0: none
		call   []grpc.CallOption
		want   float64
	}{
		{"caller deadline earliest", nil, policytestv1.PlainService_Idempotent_FullMethodName, time.Hour, nil, 0},
		{"not idempotent, caller deadline earliest", nil, policytestv1.PlainService_Plain_FullMethodName, time.Hour, nil, 0},
		{"default timeout added", nil, policytestv1.PlainService_Idempotent_FullMethodName, 0, nil, oneContext},
		{"policy and per-attempt timeouts", nil, policytestv1.TunedService_Override_FullMethodName, 0, nil, withAttempt},
		{"policy and per-attempt timeouts, no-op telemetry", []Option{noopTelemetry}, policytestv1.TunedService_Override_FullMethodName, 0, nil, withAttempt},
		{"not idempotent", nil, policytestv1.TunedService_Inherit_FullMethodName, 0, nil, oneContext},
		{"without telemetry", []Option{WithoutTelemetry()}, policytestv1.TunedService_Override_FullMethodName, 0, nil, withAttempt},
		{"without retry", []Option{WithoutRetry()}, policytestv1.TunedService_Override_FullMethodName, 0, nil, oneContext},
		// Generated client code passes grpc.StaticMethod on every call.
		{"generated client", nil, policytestv1.TunedService_Override_FullMethodName, 0, []grpc.CallOption{grpc.StaticMethod()}, withAttempt},
		{"generated client, caller deadline earliest", nil, policytestv1.PlainService_Idempotent_FullMethodName, time.Hour, []grpc.CallOption{grpc.StaticMethod()}, 0},
		// An option of the caller's besides grpc.StaticMethod: the suite
		// copies the options to add its marker.
		{"generated client with an option", nil, policytestv1.TunedService_Override_FullMethodName, 0, []grpc.CallOption{grpc.StaticMethod(), grpc.WaitForReady(false)}, withAttempt + 1},
		{"generated client without retry", []Option{WithoutRetry()}, policytestv1.TunedService_Override_FullMethodName, 0, []grpc.CallOption{grpc.StaticMethod()}, oneContext},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := build(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			call := chainInvoker(s, noopInvoker)
			ctx := context.Background()
			if tc.caller > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.caller)
				defer cancel()
			}
			got := testing.AllocsPerRun(200, func() {
				if err := call(ctx, tc.method, req, reply, cc, tc.call...); err != nil {
					t.Fatal(err)
				}
			})
			if got != tc.want || got > 6 {
				t.Errorf("%v allocs per call, want %v (one deadline context: %v), at most 6", got, tc.want, oneContext)
			}
		})
	}
}
