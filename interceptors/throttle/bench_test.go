package throttle

import (
	"context"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/clock"
)

func noopInvoker(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
	return nil
}

// BenchmarkUnary is the happy path: a healthy target, the system clock and
// random source, a no-op invoker.
func BenchmarkUnary(b *testing.B) {
	th, err := New()
	if err != nil {
		b.Fatal(err)
	}
	cc := conn(b, "passthrough:///bench")
	unary := th.UnaryClientInterceptor()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := unary(ctx, "/svc.v1.S/M", nil, nil, cc, noopInvoker); err != nil {
			b.Fatal(err)
		}
	}
}

// stillClock is a clock that costs nothing to read, to measure the
// throttle without the system clock's read.
type stillClock struct{ clock.Clock }

func (stillClock) Now() time.Time { return epoch }

// BenchmarkUnaryStillClock is the happy path without the clock read.
func BenchmarkUnaryStillClock(b *testing.B) {
	th, err := New(WithClock(stillClock{}))
	if err != nil {
		b.Fatal(err)
	}
	cc := conn(b, "passthrough:///bench")
	unary := th.UnaryClientInterceptor()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := unary(ctx, "/svc.v1.S/M", nil, nil, cc, noopInvoker); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnaryParallel is the happy path from every P at once, all on
// one target: the counters of the current bucket are shared.
func BenchmarkUnaryParallel(b *testing.B) {
	th, err := New()
	if err != nil {
		b.Fatal(err)
	}
	cc := conn(b, "passthrough:///bench")
	unary := th.UnaryClientInterceptor()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if err := unary(ctx, "/svc.v1.S/M", nil, nil, cc, noopInvoker); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkUnaryThrottling is a target that sheds half its calls: the
// probability is above zero, a random number is drawn on every call, and
// some calls are rejected locally (those allocate their Rejection).
func BenchmarkUnaryThrottling(b *testing.B) {
	th, err := New()
	if err != nil {
		b.Fatal(err)
	}
	cc := conn(b, "passthrough:///bench")
	unary := th.UnaryClientInterceptor()
	ctx := context.Background()
	shed := status.Error(codes.ResourceExhausted, "busy")
	n := 0
	invoker := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
		n++
		if n%4 != 0 {
			return shed
		}
		return nil
	}
	b.ReportAllocs()
	for b.Loop() {
		unary(ctx, "/svc.v1.S/M", nil, nil, cc, invoker)
	}
}

type eofStream struct{ grpc.ClientStream }

func (eofStream) RecvMsg(any) error { return io.EOF }

// BenchmarkStream is a stream's happy path: opened, then RecvMsg returns
// io.EOF. The stream wrapper is its one allocation.
func BenchmarkStream(b *testing.B) {
	th, err := New()
	if err != nil {
		b.Fatal(err)
	}
	cc := conn(b, "passthrough:///bench")
	intercept := th.StreamClientInterceptor()
	desc := &grpc.StreamDesc{ServerStreams: true}
	streamer := func(context.Context, *grpc.StreamDesc, *grpc.ClientConn, string, ...grpc.CallOption) (grpc.ClientStream, error) {
		return eofStream{}, nil
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		cs, err := intercept(ctx, desc, cc, "/svc.v1.S/Watch", streamer)
		if err != nil {
			b.Fatal(err)
		}
		if err := cs.RecvMsg(nil); err != io.EOF {
			b.Fatal(err)
		}
	}
}

// BenchmarkNoInterceptor is the baseline: the invoker alone.
func BenchmarkNoInterceptor(b *testing.B) {
	cc := conn(b, "passthrough:///bench")
	ctx := context.Background()
	var invoke grpc.UnaryInvoker = noopInvoker
	b.ReportAllocs()
	for b.Loop() {
		invoke(ctx, "/svc.v1.S/M", nil, nil, cc)
	}
}
