package telemetry

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/failsoft/failsoft/interceptors/observe"
	pb "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
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

// BenchmarkLoopback is a whole unary call over loopback TCP, plain and
// with the telemetry interceptors on both sides, so the added cost can be
// read against a real call.
func BenchmarkLoopback(b *testing.B) {
	sdk := func(b *testing.B) []Option {
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter(), sdktrace.WithBatchTimeout(time.Hour)))
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		b.Cleanup(func() {
			_ = tp.Shutdown(context.Background())
			_ = mp.Shutdown(context.Background())
		})
		return []Option{WithTracerProvider(tp), WithMeterProvider(mp)}
	}
	for _, tc := range []struct {
		name string
		opts func(*testing.B) []Option // nil: no telemetry at all
	}{
		{"plain", nil},
		{"passthrough", nil}, // the same interceptor slots, doing nothing: grpc's own cost of a chain
		{"noop", func(*testing.B) []Option { return nil }},
		{"sdk", sdk},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var srvOpts []grpc.ServerOption
			var cliOpts []grpc.DialOption
			if tc.name == "passthrough" {
				srvOpts = append(srvOpts, grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
					return h(ctx, req)
				}))
				pass := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
					return invoker(ctx, method, req, reply, cc, opts...)
				}
				cliOpts = append(cliOpts, grpc.WithChainUnaryInterceptor(pass, pass))
			}
			if tc.opts != nil {
				tel, err := New(tc.opts(b)...)
				if err != nil {
					b.Fatal(err)
				}
				srvOpts = append(srvOpts, grpc.UnaryInterceptor(tel.UnaryServerInterceptor()))
				cliOpts = append(cliOpts, grpc.WithChainUnaryInterceptor(tel.UnaryClientInterceptor(), tel.UnaryAttemptInterceptor()))
			}
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			s := grpc.NewServer(srvOpts...)
			pb.RegisterPlainServiceServer(s, &flaky{})
			go func() { _ = s.Serve(lis) }()
			defer s.Stop()
			conn, err := grpc.NewClient(lis.Addr().String(), append(cliOpts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			client := pb.NewPlainServiceClient(conn)
			ctx := context.Background()
			req := &pb.PingRequest{Payload: "x"}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := client.Plain(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
