package telemetry_test

import (
	"context"
	"fmt"
	"log"

	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/telemetry"
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

func ExampleHashKey() {
	fmt.Println(telemetry.HashKey("order-42"))
	// Output: 3bf8b157c4238eef
}
