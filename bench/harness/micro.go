package harness

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// terminal ends the chain of a connection built for InterceptorBench: it
// answers every call itself, so the call never reaches the transport.
func terminal(context.Context, string, any, any, *grpc.ClientConn, grpc.UnaryInvoker, ...grpc.CallOption) error {
	return nil
}

// InterceptorBench returns a benchmark of the chain's own cost: calls on a
// connection built with the chain's dial options and interceptors as a user
// builds it, whose innermost interceptor answers without sending. So every
// chain is measured the same way, including failsoft's, which installs
// itself through dial options, and what is measured is what grpc-go runs:
// ClientConn.Invoke, the chained interceptors, the terminal no-op. The
// connection never connects. It returns nil when the chain's logic is not
// in interceptors.
func InterceptorBench(spec Spec, p Params) (func(b *testing.B), error) {
	if !spec.Interceptors {
		return nil, nil
	}
	if _, err := spec.Build(p); err != nil {
		return nil, err
	}
	return func(b *testing.B) {
		chain, err := spec.Build(p)
		if err != nil {
			b.Fatal(err)
		}
		opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, chain.Dial...)
		opts = append(opts, grpc.WithChainUnaryInterceptor(append(chain.Unary, terminal)...))
		cc, err := grpc.NewClient("passthrough:///bench-noop", opts...)
		if err != nil {
			b.Fatal(err)
		}
		defer cc.Close()
		req, reply := &policytestv1.PingRequest{Payload: "x"}, &policytestv1.PingResponse{}
		b.ReportAllocs()
		for b.Loop() {
			ctx, cancel := callContext(chain)
			err := cc.Invoke(ctx, methodOverride, req, reply)
			cancel()
			if err != nil {
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
		e.warm(context.Background())
		chain := e.chain
		req := &policytestv1.PingRequest{Payload: "x"}
		b.ReportAllocs()
		for b.Loop() {
			ctx, cancel := callContext(chain)
			_, err := e.client.Override(ctx, req)
			cancel()
			if err != nil {
				b.Fatal(err)
			}
		}
	}, nil
}

// callContext is the context of one benchmarked call: the caller's own
// timeout when the chain asks for one, and no deadline otherwise.
func callContext(c *Chain) (context.Context, context.CancelFunc) {
	if c.CallerTimeout > 0 {
		return context.WithTimeout(context.Background(), c.CallerTimeout)
	}
	return context.Background(), func() {}
}
