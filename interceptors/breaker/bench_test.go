package breaker_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/breaker"
)

func noop(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }

// BenchmarkBaseline is the no-op invoker alone; the other benchmarks add
// the breaker to it.
func BenchmarkBaseline(b *testing.B) {
	ctx := context.Background()
	cc := newConn(b, "passthrough:///payments")
	var invoker grpc.UnaryInvoker = noop
	b.ReportAllocs()
	for b.Loop() {
		_ = invoker(ctx, plainMethod, nil, nil, cc)
	}
}

func benchClosed(b *testing.B, opts ...breaker.Option) {
	ic, err := breaker.New(opts...)
	if err != nil {
		b.Fatal(err)
	}
	unary := ic.UnaryClientInterceptor()
	ctx := context.Background()
	cc := newConn(b, "passthrough:///payments")
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = unary(ctx, plainMethod, nil, nil, cc, noop)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = unary(ctx, plainMethod, nil, nil, cc, noop)
			}
		})
	})
}

// BenchmarkClosed is a closed breaker with the default rule (failure rate
// over a count window).
func BenchmarkClosed(b *testing.B) { benchClosed(b) }

// BenchmarkClosedSeedRule is a closed breaker with "5 failures in 30 s".
func BenchmarkClosedSeedRule(b *testing.B) {
	benchClosed(b, breaker.FailuresWithin(5, 30*time.Second), breaker.ConsecutiveFailures(5))
}

// BenchmarkClosedPerMethod keeps one breaker per target and method.
func BenchmarkClosedPerMethod(b *testing.B) { benchClosed(b, breaker.PerMethod()) }

// BenchmarkClosedTimeWindow reads the clock once per call.
func BenchmarkClosedTimeWindow(b *testing.B) {
	benchClosed(b, breaker.FailureRate(0.5), breaker.TimeWindow(10*time.Second))
}

// BenchmarkOpen is an open breaker rejecting calls.
func BenchmarkOpen(b *testing.B) {
	ic, err := breaker.New(breaker.ConsecutiveFailures(1), breaker.OpenFor(time.Hour, time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	unary := ic.UnaryClientInterceptor()
	ctx := context.Background()
	cc := newConn(b, "passthrough:///payments")
	_ = unary(ctx, plainMethod, nil, nil, cc, func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
		return status.Error(codes.Unavailable, "down")
	})
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if unary(ctx, plainMethod, nil, nil, cc, noop) == nil {
				b.Fatal("call passed an open breaker")
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = unary(ctx, plainMethod, nil, nil, cc, noop)
			}
		})
	})
}
