package chain_test

import (
	"context"
	"fmt"

	"google.golang.org/grpc"

	"github.com/failsoft/failsoft/internal/chain"
)

// tag is a layer that prints its name on the way in and out.
type tag string

func (t tag) Unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, next chain.UnaryNext, opts ...grpc.CallOption) error {
	fmt.Println("enter", t)
	err := next.Invoke(ctx, method, req, reply, cc, opts...)
	fmt.Println("leave", t, err)
	return err
}

// Two layers folded into one chain: each call passes through them in
// order and ends in grpc-go's invoker (here a stand-in), without a closure
// per layer.
func ExampleNewUnaries() {
	layers := chain.NewUnaries(tag("outer"), tag("inner"))
	invoker := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
		fmt.Println("invoke", method)
		return nil
	}
	err := layers.Start(invoker).Invoke(context.Background(), "/pkg.Service/Method", nil, nil, nil)
	fmt.Println("result", err)
	// Output:
	// enter outer
	// enter inner
	// invoke /pkg.Service/Method
	// leave inner <nil>
	// leave outer <nil>
	// result <nil>
}
