package tracing

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Setup returns a tracer provider for service. With otlp ("HOST:PORT")
// spans are exported there in batches; shutdown flushes them.
func Setup(ctx context.Context, service, otlp string) (tp *sdktrace.TracerProvider, shutdown func(context.Context) error, err error) {
	res := resource.NewSchemaless(attribute.String("service.name", service))
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if otlp != "" {
		exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(otlp), otlptracegrpc.WithInsecure())
		if err != nil {
			return nil, nil, fmt.Errorf("tracing: OTLP exporter for %s: %w", otlp, err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(500*time.Millisecond)))
	}
	tp = sdktrace.NewTracerProvider(opts...)
	return tp, tp.Shutdown, nil
}
