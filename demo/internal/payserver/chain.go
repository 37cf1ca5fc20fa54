package payserver

import "google.golang.org/grpc"

// serverChain orders the server interceptors, outermost first. Chaos comes
// first so that an injected fault looks like the network failing: nothing
// behind it runs for an injected error, and a lost response is dropped
// after everything behind it recorded the result.
func serverChain(chaosU grpc.UnaryServerInterceptor, chaosS grpc.StreamServerInterceptor) ([]grpc.UnaryServerInterceptor, []grpc.StreamServerInterceptor) {
	return []grpc.UnaryServerInterceptor{chaosU}, []grpc.StreamServerInterceptor{chaosS}
}
