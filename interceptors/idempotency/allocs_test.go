//go:build !race

package idempotency_test

import (
	"context"
	"testing"

	"github.com/failsoft/failsoft/interceptors/idempotency"
	"github.com/failsoft/failsoft/interceptors/internal/testserver"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// TestClientAllocs pins what attaching a key costs over a no-op invoker:
// grpc's metadata.AppendToOutgoingContext (4 allocations) and, for a
// generated key, uuid.NewString (2 more). A method without a key costs
// nothing.
func TestClientAllocs(t *testing.T) {
	cc := testserver.Dial(t, "passthrough:///allocs")
	intercept := newClient(t).UnaryClientInterceptor()
	req, reply := &policytestv1.PingRequest{}, &policytestv1.PingResponse{}
	for _, tc := range []struct {
		name   string
		ctx    context.Context
		method string
		want   float64
	}{
		{"generated key", context.Background(), keyedWrite, 6},
		{"caller's key", idempotency.WithKey(context.Background(), "order-2026-000042"), keyedWrite, 4},
		{"no key needed", context.Background(), inherit, 0},
	} {
		got := testing.AllocsPerRun(200, func() {
			if err := intercept(tc.ctx, tc.method, req, reply, cc, noopInvoker); err != nil {
				t.Fatal(err)
			}
		})
		if got > tc.want {
			t.Errorf("%s: %v allocs per call, want at most %v", tc.name, got, tc.want)
		}
	}
}
