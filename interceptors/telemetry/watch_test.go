package telemetry

import (
	"context"
	"testing"

	"github.com/failsoft/failsoft/interceptors/observe"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// TestWants: the telemetry layer wants the events that cost something to
// build only when it can do something with them.
func TestWants(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	recording, span := tp.Tracer("test").Start(context.Background(), "caller")
	defer span.End()
	noop := []Option{WithTracerProvider(tracenoop.NewTracerProvider()), WithMeterProvider(metricnoop.NewMeterProvider())}
	metered := []Option{WithTracerProvider(tracenoop.NewTracerProvider()), WithMeterProvider(mp)}
	bg := context.Background()
	for _, tc := range []struct {
		name string
		opts []Option
		ctx  context.Context
		k    observe.Kind
		want bool
	}{
		{"attempt end, no-op providers", noop, bg, observe.AttemptEnd, false},
		// Attempt events become metrics only, never span events.
		{"attempt end, a recording span on the context", noop, recording, observe.AttemptEnd, false},
		{"attempt end, a meter with a reader", metered, bg, observe.AttemptEnd, true},
		{"attempt start, a meter with a reader", metered, bg, observe.AttemptStart, true},
		{"deadline set, no-op providers", noop, bg, observe.DeadlineSet, false},
		{"deadline set, a recording span", noop, recording, observe.DeadlineSet, true},
		{"key attached, no-op providers", noop, bg, observe.KeyAttached, false},
		{"key attached, a recording span", noop, recording, observe.KeyAttached, true},
		{"key attached, a meter with a reader", metered, bg, observe.KeyAttached, true},
		{"a breaker transition: always", noop, bg, observe.BreakerState, true},
	} {
		i, err := New(tc.opts...)
		if err != nil {
			t.Fatal(err)
		}
		if got := i.Wants(tc.ctx, tc.k); got != tc.want {
			t.Errorf("%s: Wants = %v, want %v", tc.name, got, tc.want)
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
