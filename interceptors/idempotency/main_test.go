package idempotency_test

import (
	"context"
	"net"
	"sync"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/policy"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	keyedWrite = policytestv1.TunedService_KeyedWrite_FullMethodName
	inherit    = policytestv1.TunedService_Inherit_FullMethodName
	watch      = policytestv1.TunedService_Watch_FullMethodName
)

// tuned serves TunedService with replaceable methods.
type tuned struct {
	policytestv1.UnimplementedTunedServiceServer
	keyed   func(context.Context, *policytestv1.PingRequest) (*policytestv1.PingResponse, error)
	inherit func(context.Context, *policytestv1.PingRequest) (*policytestv1.PingResponse, error)
	watch   func(*policytestv1.PingRequest, grpc.ServerStreamingServer[policytestv1.PingResponse]) error
}

func (s *tuned) KeyedWrite(ctx context.Context, r *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
	return s.keyed(ctx, r)
}

func (s *tuned) Inherit(ctx context.Context, r *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
	return s.inherit(ctx, r)
}

func (s *tuned) Watch(r *policytestv1.PingRequest, ss grpc.ServerStreamingServer[policytestv1.PingResponse]) error {
	return s.watch(r, ss)
}

// serve starts a gRPC server on 127.0.0.1 and returns its address; it is
// stopped when the test ends.
func serve(t testing.TB, srv policytestv1.TunedServiceServer, opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(opts...)
	policytestv1.RegisterTunedServiceServer(s, srv)
	done := make(chan struct{})
	go func() { _ = s.Serve(lis); close(done) }()
	t.Cleanup(func() { s.Stop(); <-done })
	return lis.Addr().String()
}

// dial connects to target; the connection is closed when the test ends.
func dial(t testing.TB, target string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(target, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func withKeyMD(ctx context.Context, keys ...string) context.Context {
	for _, k := range keys {
		ctx = metadata.AppendToOutgoingContext(ctx, policy.KeyMetadata, k)
	}
	return ctx
}

// events records observed events.
type events struct {
	mu sync.Mutex
	l  []observe.Event
}

func (e *events) Observe(_ context.Context, ev observe.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.l = append(e.l, ev)
}

func (e *events) kinds(k observe.Kind) []observe.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []observe.Event
	for _, ev := range e.l {
		if ev.Kind == k {
			out = append(out, ev)
		}
	}
	return out
}
