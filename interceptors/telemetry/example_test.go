package telemetry_test

import (
	"context"
	"fmt"
	"log"

	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/telemetry"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// The call interceptor goes first, the attempt interceptor after the retry
// layer; the Interceptor is also the Observer the other layers report to.
func Example() {
	tel, err := telemetry.New() // global providers, read per call
	if err != nil {
		log.Fatal(err)
	}
	var retryObserver observe.Observer = tel // retry.WithObserver(tel), breaker.WithObserver(tel), ...
	_ = retryObserver
	conn, err := grpc.NewClient("dns:///orders.example:443",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(
			tel.UnaryClientInterceptor(),
			// retry / hedge interceptors here
			tel.UnaryAttemptInterceptor(),
		),
		grpc.WithChainStreamInterceptor(tel.StreamClientInterceptor(), tel.StreamAttemptInterceptor()),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	fmt.Println("ready")
	// Output: ready
}

func ExampleInterceptor_UnaryServerInterceptor() {
	tel, err := telemetry.New()
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(tel.UnaryServerInterceptor() /*, idempotency server interceptor */),
		grpc.ChainStreamInterceptor(tel.StreamServerInterceptor()),
	)
	defer srv.Stop()
	fmt.Println("ok")
	// Output: ok
}

// Events reported to the Interceptor become span events on the span of the
// context they are reported with.
func ExampleInterceptor_Observe() {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tel, err := telemetry.New(telemetry.WithTracerProvider(tp))
	if err != nil {
		log.Fatal(err)
	}
	ctx, span := tp.Tracer("app").Start(context.Background(), "call")
	tel.Observe(ctx, observe.Event{Kind: observe.BreakerRejected, Target: "dns:///orders.example:443"})
	span.End()
	for _, ev := range rec.Ended()[0].Events() {
		fmt.Println(ev.Name, ev.Attributes[0].Value.AsString())
	}
	// Output: failsoft.breaker.rejected dns:///orders.example:443
}

// Explicit providers and propagator instead of the global ones, and the raw
// idempotency key on spans (only where the trace store may hold it).
func ExampleNew() {
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	tel, err := telemetry.New(
		telemetry.WithTracerProvider(tp),
		telemetry.WithMeterProvider(metricnoop.NewMeterProvider()),
		telemetry.WithPropagator(propagation.TraceContext{}),
		telemetry.WithRawIdempotencyKey(),
	)
	fmt.Println(tel != nil, err)
	_, err = telemetry.New(telemetry.WithTracerProvider(nil))
	fmt.Println(err)
	// Output:
	// true <nil>
	// telemetry.WithTracerProvider: nil provider
}
