package retry_test

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/interceptors/retry"
)

// A server sheds an attempt with UNAVAILABLE and a pushback trailer. Inside
// the pushback interceptor the error is a plain failure; outside it, where
// a circuit breaker or a throttle sits, it is overload, with the same
// status.
func ExampleUnaryPushbackInterceptor() {
	server := func(_ context.Context, _ string, _, _ any, _ *grpc.ClientConn, opts ...grpc.CallOption) error {
		for _, o := range opts {
			if t, ok := o.(grpc.TrailerCallOption); ok {
				*t.TrailerAddr = metadata.Pairs(retry.PushbackMetadata, "20")
			}
		}
		err := status.Error(codes.Unavailable, "shedding load")
		fmt.Println("on the wire:", outcome.Default.Classify(err))
		return err
	}
	mark := retry.UnaryPushbackInterceptor()
	err := mark(context.Background(), "/pkg.Service/Method", nil, nil, nil, server)
	fmt.Println("outside:", outcome.Default.Classify(err), status.Code(err))
	// Output:
	// on the wire: failure
	// outside: overload Unavailable
}

// A stream ends with UNAVAILABLE and a pushback trailer: its last RecvMsg
// error is overload to the layers outside the interceptor.
func ExampleStreamPushbackInterceptor() {
	server := func(context.Context, *grpc.StreamDesc, *grpc.ClientConn, string, ...grpc.CallOption) (grpc.ClientStream, error) {
		// endingStream answers one message, then err, with trailer tr.
		return &endingStream{
			tr:  metadata.Pairs(retry.PushbackMetadata, "20"),
			err: status.Error(codes.Unavailable, "shedding load"),
		}, nil
	}
	mark := retry.StreamPushbackInterceptor()
	s, err := mark(context.Background(), &grpc.StreamDesc{ServerStreams: true}, nil, "/pkg.Service/Watch", server)
	if err != nil {
		panic(err)
	}
	fmt.Println(s.RecvMsg(nil))
	err = s.RecvMsg(nil)
	fmt.Println(outcome.Default.Classify(err), status.Code(err))
	// Output:
	// <nil>
	// overload Unavailable
}
