package retry_test

import (
	"context"
	"io"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/failsoft/failsoft/interceptors/retry"
	pb "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

func benchPushbackUnary(b *testing.B, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) {
	cc := benchConn(b)
	ui := retry.UnaryPushbackInterceptor()
	ctx := context.Background()
	req, reply := &pb.PingRequest{}, &pb.PingResponse{}
	b.ReportAllocs()
	for b.Loop() {
		_ = ui(ctx, mIdempotent, req, reply, cc, invoker, opts...)
	}
}

// BenchmarkPushbackUnaryTrailerInOpts: a successful attempt whose options
// already collect the trailer, as the retry layer's do for every
// retryable call.
func BenchmarkPushbackUnaryTrailerInOpts(b *testing.B) {
	var md metadata.MD
	benchPushbackUnary(b, noopInvoker, grpc.WaitForReady(true), grpc.Trailer(&md))
}

// BenchmarkPushbackUnaryNoOpts: a successful attempt without options; the
// interceptor adds a trailer option of its own, from a pool.
func BenchmarkPushbackUnaryNoOpts(b *testing.B) { benchPushbackUnary(b, noopInvoker) }

// BenchmarkPushbackUnaryOtherOpts: a successful attempt whose options do
// not collect the trailer (a method that is not retried).
func BenchmarkPushbackUnaryOtherOpts(b *testing.B) {
	benchPushbackUnary(b, noopInvoker, grpc.WaitForReady(true), grpc.MaxCallRecvMsgSize(1<<20))
}

// BenchmarkPushbackUnaryMarked: a failed attempt with a pushback trailer,
// marked as overload.
func BenchmarkPushbackUnaryMarked(b *testing.B) {
	tr := metadata.Pairs(retry.PushbackMetadata, "20")
	err := fail(codes.Unavailable)
	var md metadata.MD
	benchPushbackUnary(b, func(_ context.Context, _ string, _, _ any, _ *grpc.ClientConn, opts ...grpc.CallOption) error {
		*opts[len(opts)-1].(grpc.TrailerCallOption).TrailerAddr = tr
		return err
	}, grpc.Trailer(&md))
}

// BenchmarkPushbackUnaryFailed: a failed attempt without pushback: the
// status details are read for a RetryInfo.
func BenchmarkPushbackUnaryFailed(b *testing.B) {
	err := fail(codes.Unavailable)
	var md metadata.MD
	benchPushbackUnary(b, func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
		return err
	}, grpc.Trailer(&md))
}

// BenchmarkRetryWithPushbackHappyPath: the retry layer over the pushback
// interceptor, a retryable method whose first attempt succeeds; compare
// with BenchmarkUnaryHappyPath.
func BenchmarkRetryWithPushbackHappyPath(b *testing.B) {
	cc := benchConn(b)
	ic, err := retry.New(retry.WithResolver(testResolver(b)))
	if err != nil {
		b.Fatal(err)
	}
	outer, inner := ic.UnaryClientInterceptor(), retry.UnaryPushbackInterceptor()
	invoker := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
		return inner(ctx, method, req, reply, cc, noopInvoker, opts...)
	}
	ctx := context.Background()
	req, reply := &pb.PingRequest{}, &pb.PingResponse{}
	b.ReportAllocs()
	for b.Loop() {
		if err := outer(ctx, mIdempotent, req, reply, cc, invoker); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPushbackStream: a server stream through the interceptor (open,
// send, close, one message, end); compare with BenchmarkStreamNoop.
func BenchmarkPushbackStream(b *testing.B) {
	cc := benchConn(b)
	si := retry.StreamPushbackInterceptor()
	var bs benchStream
	streamer := func(context.Context, *grpc.StreamDesc, *grpc.ClientConn, string, ...grpc.CallOption) (grpc.ClientStream, error) {
		bs.n = 0
		return &bs, nil
	}
	ctx := context.Background()
	req, reply := &pb.PingRequest{}, &pb.PingResponse{}
	b.ReportAllocs()
	for b.Loop() {
		s, err := si(ctx, watchDesc, cc, mWatch, streamer)
		if err != nil {
			b.Fatal(err)
		}
		_ = s.SendMsg(req)
		_ = s.CloseSend()
		if err := s.RecvMsg(reply); err != nil {
			b.Fatal(err)
		}
		if err := s.RecvMsg(reply); err != io.EOF {
			b.Fatal(err)
		}
	}
}
