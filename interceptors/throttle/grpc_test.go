package throttle

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/internal/testserver"
	"github.com/failsoft/failsoft/interceptors/outcome"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// loopServer answers Plain and Watch with whatever its fields say, and
// counts the calls that reach it.
type loopServer struct {
	policytestv1.UnimplementedPlainServiceServer
	policytestv1.UnimplementedTunedServiceServer
	calls  atomic.Int32
	result atomic.Pointer[error] // nil: success
}

func (s *loopServer) answer() error {
	s.calls.Add(1)
	if e := s.result.Load(); e != nil {
		return *e
	}
	return nil
}

func (s *loopServer) Plain(ctx context.Context, req *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
	grpc.SetTrailer(ctx, metadata.Pairs("served-by", "loop"))
	if err := s.answer(); err != nil {
		return nil, err
	}
	return &policytestv1.PingResponse{Payload: req.Payload}, nil
}

func (s *loopServer) Watch(req *policytestv1.PingRequest, stream grpc.ServerStreamingServer[policytestv1.PingResponse]) error {
	stream.SetHeader(metadata.Pairs("watching", "yes"))
	if err := s.answer(); err != nil {
		return err
	}
	for range 2 {
		if err := stream.Send(&policytestv1.PingResponse{Payload: req.Payload}); err != nil {
			return err
		}
	}
	return nil
}

func (s *loopServer) fail(err error) { s.result.Store(&err) }

// loopback serves s on 127.0.0.1 and returns a client through th.
func loopback(t *testing.T, s *loopServer, th *Interceptor) *grpc.ClientConn {
	t.Helper()
	addr := testserver.Serve(t, testserver.Policytest(s))
	return testserver.Dial(t, addr, testserver.Through(th)...)
}

func TestLoopbackUnaryRejection(t *testing.T) {
	// Every draw is 0: the throttle rejects whenever the probability is
	// above zero.
	th, err := New(WithClock(clock.NewFake(epoch)), WithRand(fixed(0)))
	if err != nil {
		t.Fatal(err)
	}
	s := &loopServer{}
	cc := loopback(t, s, th)
	client := policytestv1.NewPlainServiceClient(cc)
	ctx := context.Background()

	// A healthy call is a plain gRPC call: response and trailers intact.
	var trailer metadata.MD
	resp, err := client.Plain(ctx, &policytestv1.PingRequest{Payload: "hi"}, grpc.Trailer(&trailer))
	if err != nil || resp.Payload != "hi" || trailer.Get("served-by")[0] != "loop" {
		t.Fatalf("healthy call: %v, %v, trailer %v", resp, err, trailer)
	}

	// The server sheds two calls: 3 requests, 1 accept, p = (3-2)/4.
	s.fail(status.Error(codes.ResourceExhausted, "server busy"))
	for range 2 {
		_, err = client.Plain(ctx, &policytestv1.PingRequest{}, grpc.Trailer(&trailer))
		if st := status.Convert(err); st.Code() != codes.ResourceExhausted || st.Message() != "server busy" || trailer.Get("served-by")[0] != "loop" {
			t.Fatalf("shed call: %v, trailer %v", err, trailer)
		}
	}
	if got := th.State(cc.Target()); got.Probability != 0.25 {
		t.Fatalf("state %+v", got)
	}

	// The next call is rejected by the client itself.
	_, err = client.Plain(ctx, &policytestv1.PingRequest{})
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("code %v, want RESOURCE_EXHAUSTED", st.Code())
	}
	want := "failsoft: throttle: call to " + cc.Target() + " rejected locally with probability 0.25: the target accepted 1 of the last 3 requests in 2m0s"
	if st.Message() != want {
		t.Fatalf("message %q, want %q", st.Message(), want)
	}
	var rej *outcome.Rejection
	if !errors.As(err, &rej) || rej.Layer != "throttle" || rej.Target != cc.Target() {
		t.Fatalf("rejection %+v", rej)
	}
	if n := s.calls.Load(); n != 3 {
		t.Fatalf("%d calls reached the server, want 3", n)
	}
}

func TestLoopbackStream(t *testing.T) {
	th, err := New(WithClock(clock.NewFake(epoch)), WithRand(fixed(0)))
	if err != nil {
		t.Fatal(err)
	}
	s := &loopServer{}
	cc := loopback(t, s, th)
	client := policytestv1.NewTunedServiceClient(cc)
	ctx := context.Background()

	watch := func() (msgs int, header metadata.MD, err error) {
		stream, err := client.Watch(ctx, &policytestv1.PingRequest{Payload: "w"})
		if err != nil {
			return 0, nil, err
		}
		header, _ = stream.Header()
		for {
			if _, err := stream.Recv(); err != nil {
				if err == io.EOF {
					err = nil
				}
				return msgs, header, err
			}
			msgs++
		}
	}

	// A stream that ends OK is accepted; headers and messages pass as is.
	msgs, header, err := watch()
	if err != nil || msgs != 2 || header.Get("watching")[0] != "yes" {
		t.Fatalf("watch: %d messages, header %v, %v", msgs, header, err)
	}
	if got := th.State(cc.Target()); got.Requests != 1 || got.Accepts != 1 {
		t.Fatalf("after a good stream: %+v", got)
	}

	// A stream whose final status is RESOURCE_EXHAUSTED is not accepted.
	s.fail(status.Error(codes.ResourceExhausted, "server busy"))
	if _, _, err = watch(); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("shed stream: %v", err)
	}
	if got := th.State(cc.Target()); got.Requests != 2 || got.Accepts != 1 {
		t.Fatalf("after a shed stream: %+v", got)
	}
	s.fail(status.Error(codes.ResourceExhausted, "server busy"))
	watch()

	// 3 requests, 1 accept: the next stream is not even opened.
	_, _, err = watch()
	if status.Code(err) != codes.ResourceExhausted || !strings.HasPrefix(status.Convert(err).Message(), "failsoft: throttle: ") {
		t.Fatalf("throttled stream: %v", err)
	}
	if n := s.calls.Load(); n != 3 {
		t.Fatalf("%d streams reached the server, want 3", n)
	}
}
