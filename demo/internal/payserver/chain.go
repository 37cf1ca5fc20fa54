package payserver

import (
	"google.golang.org/grpc"

	"github.com/failsoft/failsoft/interceptors/deadline"
)

// serverChain orders the server interceptors, outermost first:
//
//	chaos -> deadline -> service
//
// Chaos comes first so that an injected fault looks like the network
// failing: nothing behind it runs for an injected error, and a lost
// response is dropped after everything behind it recorded the result. The
// deadline interceptor gives the handler a deadline a safety margin before
// the caller's, so that it can still answer.
func serverChain(chaosU grpc.UnaryServerInterceptor, chaosS grpc.StreamServerInterceptor) ([]grpc.UnaryServerInterceptor, []grpc.StreamServerInterceptor, error) {
	dl, err := deadline.New()
	if err != nil {
		return nil, nil, err
	}
	return []grpc.UnaryServerInterceptor{chaosU, dl.UnaryServerInterceptor()},
		[]grpc.StreamServerInterceptor{chaosS, dl.StreamServerInterceptor()}, nil
}
