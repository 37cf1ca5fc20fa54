package telemetry

import (
	"context"
	"testing"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// TestWatchesAttempts: the telemetry layer wants attempt events only when
// it can do something with them, so that the retry layer may skip timing
// attempts for it.
func TestWatchesAttempts(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	recording, span := tp.Tracer("test").Start(context.Background(), "caller")
	defer span.End()
	for _, tc := range []struct {
		name string
		opts []Option
		ctx  context.Context
		want bool
	}{
		{"no-op providers", []Option{WithTracerProvider(tracenoop.NewTracerProvider()), WithMeterProvider(metricnoop.NewMeterProvider())},
			context.Background(), false},
		{"no-op providers, a recording span on the context", []Option{WithTracerProvider(tracenoop.NewTracerProvider()), WithMeterProvider(metricnoop.NewMeterProvider())},
			recording, true},
		{"a meter with a reader", []Option{WithTracerProvider(tracenoop.NewTracerProvider()), WithMeterProvider(mp)},
			context.Background(), true},
	} {
		i, err := New(tc.opts...)
		if err != nil {
			t.Fatal(err)
		}
		if got := i.WatchesAttempts(tc.ctx); got != tc.want {
			t.Errorf("%s: WatchesAttempts = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestEnabled(t *testing.T) {
	mp := sdkmetric.NewMeterProvider()
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() {
		_ = mp.Shutdown(context.Background())
		_ = tp.Shutdown(context.Background())
	})
	for _, tc := range []struct {
		name string
		opts []Option
		want bool
	}{
		{"global providers", nil, true},
		{"both no-op", []Option{WithTracerProvider(tracenoop.NewTracerProvider()), WithMeterProvider(metricnoop.NewMeterProvider())}, false},
		{"no-op tracer, global meter", []Option{WithTracerProvider(tracenoop.NewTracerProvider())}, true},
		{"no-op tracer, real meter", []Option{WithTracerProvider(tracenoop.NewTracerProvider()), WithMeterProvider(mp)}, true},
		{"real tracer, no-op meter", []Option{WithTracerProvider(tp), WithMeterProvider(metricnoop.NewMeterProvider())}, true},
	} {
		i, err := New(tc.opts...)
		if err != nil {
			t.Fatal(err)
		}
		if got := i.Enabled(); got != tc.want {
			t.Errorf("%s: Enabled = %v, want %v", tc.name, got, tc.want)
		}
	}
}
