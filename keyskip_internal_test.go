package failsoft

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/policy"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
	failsoftv1 "github.com/failsoft/failsoft/proto/failsoft/v1"
)

// TestSuiteSkipsKeyLayer: calls to methods that require no idempotency key
// skip the key layer, those that require one still get one, and a method
// whose policy does not resolve still fails as it did.
func TestSuiteSkipsKeyLayer(t *testing.T) {
	broken := resolverWith(t, map[string]*failsoftv1.MethodPolicy{badPolicies[1].name: badPolicies[1].p})
	for _, tc := range []struct {
		name     string
		opts     []Option
		method   string
		wantSkip bool // a chain without the key layer is built
		wantKeys int
		wantCode codes.Code
	}{
		{"no key needed", nil, policytestv1.PlainService_Idempotent_FullMethodName, true, 0, codes.OK},
		{"key needed", nil, policytestv1.TunedService_KeyedWrite_FullMethodName, true, 1, codes.OK},
		{"unresolvable policy", []Option{WithResolver(broken), WithLatePolicies()}, checkedMethod(badPolicies[1].name), true, 0, codes.FailedPrecondition},
		{"key layer off", []Option{WithoutIdempotency()}, policytestv1.TunedService_KeyedWrite_FullMethodName, false, 0, codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := build(append([]Option{WithoutTelemetry()}, tc.opts...))
			if err != nil {
				t.Fatal(err)
			}
			if got := s.noKey != nil; got != tc.wantSkip {
				t.Fatalf("chain without the key layer built: %v, want %v", got, tc.wantSkip)
			}
			keys, calls := -1, 0
			invoker := func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
				calls++
				md, _ := metadata.FromOutgoingContext(ctx)
				keys = len(md.Get(policy.KeyMetadata))
				return nil
			}
			err = s.unaryInterceptor(context.Background(), tc.method, &policytestv1.PingRequest{}, &policytestv1.PingResponse{}, idleConn(t), invoker)
			if status.Code(err) != tc.wantCode {
				t.Fatalf("call: %v, want code %v", err, tc.wantCode)
			}
			if tc.wantCode != codes.OK {
				if calls != 0 {
					t.Errorf("a call that failed to resolve was sent %d times", calls)
				}
				return
			}
			if calls != 1 || keys != tc.wantKeys {
				t.Errorf("sent %d times with %d keys, want once with %d", calls, keys, tc.wantKeys)
			}
		})
	}
}
