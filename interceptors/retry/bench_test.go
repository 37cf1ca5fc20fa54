package retry_test

import (
	"context"
	"io"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/retry"
	pb "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

func benchConn(b *testing.B) *grpc.ClientConn {
	cc, err := grpc.NewClient("passthrough:///bench", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cc.Close() })
	return cc
}

func noopInvoker(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
	return nil
}

func benchUnary(b *testing.B, method string, intercept bool, opts ...retry.Option) {
	cc := benchConn(b)
	ic, err := retry.New(append([]retry.Option{retry.WithResolver(testResolver(b))}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	u := ic.UnaryClientInterceptor()
	ctx := context.Background()
	req, reply := &pb.PingRequest{}, &pb.PingResponse{}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if intercept {
			err = u(ctx, method, req, reply, cc, noopInvoker)
		} else {
			err = noopInvoker(ctx, method, req, reply, cc)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnaryNoop is the baseline: the no-op invoker alone.
func BenchmarkUnaryNoop(b *testing.B) { benchUnary(b, mIdempotent, false) }

// BenchmarkUnaryHappyPath: a retryable method whose first attempt
// succeeds.
func BenchmarkUnaryHappyPath(b *testing.B) { benchUnary(b, mIdempotent, true) }

// BenchmarkUnaryNotRetryable: a method that is never retried.
func BenchmarkUnaryNotRetryable(b *testing.B) { benchUnary(b, mPlain, true) }

// BenchmarkUnaryHappyPathObserved: with an observer, which gets four
// events and an attempt context.
func BenchmarkUnaryHappyPathObserved(b *testing.B) {
	benchUnary(b, mIdempotent, true, retry.WithObserver(observe.Func(func(context.Context, observe.Event) {})))
}

// BenchmarkUnaryHedgedFirstWins: a hedged method whose first attempt
// answers before the hedge delay (a goroutine, a timer and a reply copy).
func BenchmarkUnaryHedgedFirstWins(b *testing.B) { benchUnary(b, mHedged, true) }

// benchStream is a client stream that answers one message, then io.EOF.
type benchStream struct {
	grpc.ClientStream
	n int
}

func (s *benchStream) SendMsg(any) error { return nil }
func (s *benchStream) CloseSend() error  { return nil }
func (s *benchStream) Header() (metadata.MD, error) {
	return nil, nil
}
func (s *benchStream) RecvMsg(any) error {
	s.n++
	if s.n > 1 {
		return io.EOF
	}
	return nil
}

func benchStreamCall(b *testing.B, intercept bool) {
	cc := benchConn(b)
	ic, err := retry.New(retry.WithResolver(testResolver(b)))
	if err != nil {
		b.Fatal(err)
	}
	si := ic.StreamClientInterceptor()
	var bs benchStream
	streamer := func(context.Context, *grpc.StreamDesc, *grpc.ClientConn, string, ...grpc.CallOption) (grpc.ClientStream, error) {
		bs.n = 0
		return &bs, nil
	}
	ctx := context.Background()
	req, reply := &pb.PingRequest{}, &pb.PingResponse{}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		var s grpc.ClientStream
		if intercept {
			s, err = si(ctx, watchDesc, cc, mWatch, streamer)
		} else {
			s, err = streamer(ctx, watchDesc, cc, mWatch)
		}
		if err != nil {
			b.Fatal(err)
		}
		if err := s.SendMsg(req); err != nil {
			b.Fatal(err)
		}
		if err := s.CloseSend(); err != nil {
			b.Fatal(err)
		}
		if err := s.RecvMsg(reply); err != nil {
			b.Fatal(err)
		}
		if err := s.RecvMsg(reply); err != io.EOF {
			b.Fatal(err)
		}
	}
}

// BenchmarkStreamNoop is the baseline: a server stream over a no-op
// streamer (open, send, close, one message, end).
func BenchmarkStreamNoop(b *testing.B) { benchStreamCall(b, false) }

// BenchmarkStreamHappyPath: the same through the interceptor, which keeps
// the request for replay until the first response commits the stream.
func BenchmarkStreamHappyPath(b *testing.B) { benchStreamCall(b, true) }
