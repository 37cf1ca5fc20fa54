package failsoft

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// chainInvoker returns invoker behind the suite's unary interceptor, as
// grpc-go calls it.
func chainInvoker(s *suite, invoker grpc.UnaryInvoker) grpc.UnaryInvoker {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
		return s.unaryInterceptor(ctx, method, req, reply, cc, invoker, opts...)
	}
}

func noopInvoker(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
	return nil
}

// BenchmarkChainNoopInvoker measures what the whole suite adds to a call
// whose first attempt succeeds, over an invoker that does nothing.
func BenchmarkChainNoopInvoker(b *testing.B) {
	cc, err := grpc.NewClient("passthrough:///bench", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	req, reply := &policytestv1.PingRequest{}, &policytestv1.PingResponse{}
	for _, bc := range []struct {
		name     string
		method   string
		deadline bool
	}{
		{"idempotent/caller-deadline", "/failsoft.policytest.v1.PlainService/Idempotent", true},
		{"idempotent/no-deadline", "/failsoft.policytest.v1.PlainService/Idempotent", false},
		{"keyed-write/caller-deadline", "/failsoft.policytest.v1.TunedService/KeyedWrite", true},
		// The proto gives Override a call timeout and a per-attempt
		// timeout: the suite makes one context for both.
		{"override/policy-and-attempt-timeouts", "/failsoft.policytest.v1.TunedService/Override", false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ch, err := build(nil)
			if err != nil {
				b.Fatal(err)
			}
			call := chainInvoker(ch, noopInvoker)
			ctx := context.Background()
			if bc.deadline {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, time.Hour)
				defer cancel()
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := call(ctx, bc.method, req, reply, cc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
