package telemetry

import (
	"context"
	"testing"
	"time"

	"github.com/failsoft/failsoft/interceptors/observe"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
)

// benchCall runs one logical call through the call and attempt interceptors
// over a no-op invoker, with the two events a retried call reports.
func benchCall(b *testing.B, tel *Interceptor) {
	cc := newIdleConn(b)
	call, attempt := tel.UnaryClientInterceptor(), tel.UnaryAttemptInterceptor()
	done := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }
	invoker := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
		tel.Observe(ctx, observe.Event{Kind: observe.AttemptStart, Method: method, Target: "t", Attempt: 1})
		return attempt(ctx, method, req, reply, cc, done)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = call(ctx, "/p.S/M", nil, nil, cc, invoker)
	}
}

func BenchmarkBaseline(b *testing.B) {
	cc := newIdleConn(b)
	done := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = done(ctx, "/p.S/M", nil, nil, cc)
	}
}

// BenchmarkNoop: global no-op providers, the default before an SDK is
// installed.
func BenchmarkNoop(b *testing.B) {
	tel, err := New()
	if err != nil {
		b.Fatal(err)
	}
	benchCall(b, tel)
}

// BenchmarkSDK: an SDK tracer that samples every call, exporting to a
// discarding exporter through the batch processor, and an SDK meter.
func BenchmarkSDK(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter(), sdktrace.WithBatchTimeout(time.Hour)))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	tel, err := New(WithTracerProvider(tp), WithMeterProvider(mp))
	if err != nil {
		b.Fatal(err)
	}
	benchCall(b, tel)
}

// BenchmarkSDKNotSampled: an SDK tracer that samples nothing.
func BenchmarkSDKNotSampled(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tel, err := New(WithTracerProvider(tp))
	if err != nil {
		b.Fatal(err)
	}
	benchCall(b, tel)
}
