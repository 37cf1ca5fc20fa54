package testserver

import (
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// Serve starts a gRPC server made with opts on 127.0.0.1, after register
// has registered its services, and returns its address. When the test ends
// the server is stopped, and Serve waits for it to have returned.
func Serve(t testing.TB, register func(*grpc.Server), opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(opts...)
	register(s)
	done := make(chan struct{})
	go func() { _ = s.Serve(lis); close(done) }()
	t.Cleanup(func() { s.Stop(); <-done })
	return lis.Addr().String()
}

// PolicyServer is an implementation of both services of the policytest
// package.
type PolicyServer interface {
	pb.PlainServiceServer
	pb.TunedServiceServer
}

// Policytest registers srv as the policytest PlainService and TunedService.
func Policytest(srv PolicyServer) func(*grpc.Server) {
	return func(s *grpc.Server) {
		pb.RegisterPlainServiceServer(s, srv)
		pb.RegisterTunedServiceServer(s, srv)
	}
}

// Dial connects to addr without transport security, with opts after that;
// the connection is closed when the test ends.
func Dial(t testing.TB, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// ClientInterceptor is what every client-side interceptor package's
// Interceptor provides.
type ClientInterceptor interface {
	UnaryClientInterceptor() grpc.UnaryClientInterceptor
	StreamClientInterceptor() grpc.StreamClientInterceptor
}

// Through returns the dial options that send a connection's unary and
// stream calls through ic, outside any interceptors chained after them.
func Through(ic ClientInterceptor) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(ic.UnaryClientInterceptor()),
		grpc.WithChainStreamInterceptor(ic.StreamClientInterceptor()),
	}
}
