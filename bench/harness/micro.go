package harness

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/grpc"

	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// terminal ends the chain of a connection built for InterceptorBench: it
// answers every call itself, so the call never reaches the transport.
func terminal(context.Context, string, any, any, *grpc.ClientConn, grpc.UnaryInvoker, ...grpc.CallOption) error {
	return nil
}

// Micro names the two Go benchmarks of a chain.
type Micro string

const (
	// Interceptors is the chain's own cost: calls on a connection built
	// with the chain's dial options and interceptors as a user builds it,
	// whose innermost interceptor answers without sending. So every chain
	// is measured the same way, including failsoft's, which installs
	// itself through dial options, and what is measured is what grpc-go
	// runs: ClientConn.Invoke, the chained interceptors, the terminal
	// no-op. The connection never connects.
	Interceptors Micro = "interceptors"
	// Loopback is one unary call through the chain to a server on
	// 127.0.0.1 that answers at once. Allocations count both the client
	// and the server, which share the process.
	Loopback Micro = "loopback"
)

// Applies reports whether m measures something for spec: the interceptor
// cost needs the chain's logic to be in interceptors.
func (m Micro) Applies(spec Spec) bool { return m == Loopback || spec.Interceptors }

// caller makes the calls of one Go benchmark: call makes one, done
// releases what the calls needed.
type caller struct {
	call func() error
	done func()
}

func newCaller(spec Spec, p Params, m Micro) (*caller, error) {
	switch m {
	case Interceptors:
		chain, err := spec.Build(p)
		if err != nil {
			return nil, err
		}
		chain.Unary = append(chain.Unary, terminal)
		cc, err := grpc.NewClient("passthrough:///bench-noop", chain.dialOptions(false)...)
		if err != nil {
			return nil, err
		}
		req, reply := &policytestv1.PingRequest{Payload: "x"}, &policytestv1.PingResponse{}
		return &caller{
			call: func() error {
				ctx, cancel := callContext(chain)
				defer cancel()
				return cc.Invoke(ctx, methodOverride, req, reply)
			},
			done: func() { _ = cc.Close() },
		}, nil
	case Loopback:
		e, err := newEnv(spec, p, Faults{})
		if err != nil {
			return nil, err
		}
		e.warm(context.Background())
		req := &policytestv1.PingRequest{Payload: "x"}
		return &caller{
			call: func() error {
				ctx, cancel := callContext(e.chain)
				defer cancel()
				_, err := e.client.Override(ctx, req)
				return err
			},
			done: e.close,
		}, nil
	}
	return nil, fmt.Errorf("no Go benchmark %q", m)
}

// Bench returns the Go benchmark m of spec, or nil when it does not apply.
func Bench(spec Spec, p Params, m Micro) (func(b *testing.B), error) {
	if !m.Applies(spec) {
		return nil, nil
	}
	if _, err := spec.Build(p); err != nil {
		return nil, err
	}
	return func(b *testing.B) {
		c, err := newCaller(spec, p, m)
		if err != nil {
			b.Fatal(err)
		}
		defer c.done()
		b.ReportAllocs()
		for b.Loop() {
			if err := c.call(); err != nil {
				b.Fatal(err)
			}
		}
	}, nil
}

// Calls makes n calls of the Go benchmark m of the chain named chain, for
// a process that measures them from outside (see Instructions).
func Calls(chain string, p Params, m Micro, n int) error {
	for _, spec := range Specs() {
		if spec.Name != chain {
			continue
		}
		if !m.Applies(spec) {
			return fmt.Errorf("%s: no %s benchmark", chain, m)
		}
		c, err := newCaller(spec, p, m)
		if err != nil {
			return err
		}
		defer c.done()
		for range n {
			if err := c.call(); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("no chain %q", chain)
}

// callContext is the context of one benchmarked call: the caller's own
// timeout when the chain asks for one, and no deadline otherwise.
func callContext(c *Chain) (context.Context, context.CancelFunc) {
	if c.CallerTimeout > 0 {
		return context.WithTimeout(context.Background(), c.CallerTimeout)
	}
	return context.Background(), func() {}
}
