package harness

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// chainUnary chains interceptors exactly as grpc.WithChainUnaryInterceptor
// does, so the cost measured over a no-op invoker is the cost paid in a
// real call.
func chainUnary(ics []grpc.UnaryClientInterceptor) grpc.UnaryClientInterceptor {
	if len(ics) == 1 {
		return ics[0]
	}
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return ics[0](ctx, method, req, reply, cc, chainedInvoker(ics, 0, invoker), opts...)
	}
}

func chainedInvoker(ics []grpc.UnaryClientInterceptor, curr int, final grpc.UnaryInvoker) grpc.UnaryInvoker {
	if curr == len(ics)-1 {
		return final
	}
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
		return ics[curr+1](ctx, method, req, reply, cc, chainedInvoker(ics, curr+1, final), opts...)
	}
}

func noopInvoker(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
	return nil
}

// InterceptorBench returns a benchmark of the chain's unary interceptors
// over a no-op invoker, for the idempotent method the scenarios call. The
// ClientConn is real (failsoft keys its state by cc.Target()) but never
// connects. It returns nil when the chain has no interceptors.
func InterceptorBench(spec Spec, p Params) (func(b *testing.B), error) {
	if !spec.Interceptors {
		return nil, nil
	}
	chain, err := spec.Build(p)
	if err != nil {
		return nil, err
	}
	ic := chainUnary(chain.Unary)
	return func(b *testing.B) {
		cc, err := grpc.NewClient("passthrough:///bench-noop", grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer cc.Close()
		ctx := context.Background()
		req, reply := &policytestv1.PingRequest{Payload: "x"}, &policytestv1.PingResponse{}
		b.ReportAllocs()
		for b.Loop() {
			if err := ic(ctx, methodOverride, req, reply, cc, noopInvoker); err != nil {
				b.Fatal(err)
			}
		}
	}, nil
}

// LoopbackBench returns a benchmark of one unary call through the chain to
// a server on 127.0.0.1 that answers at once. Allocations count both the
// client and the server, which share the process.
func LoopbackBench(spec Spec, p Params) (func(b *testing.B), error) {
	if _, err := spec.Build(p); err != nil {
		return nil, err
	}
	return func(b *testing.B) {
		e, err := newEnv(spec, p, Faults{})
		if err != nil {
			b.Fatal(err)
		}
		defer e.close()
		ctx := context.Background()
		e.warm(ctx)
		req := &policytestv1.PingRequest{Payload: "x"}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := e.client.Override(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	}, nil
}
