package telemetry

import (
	"errors"

	"github.com/failsoft/failsoft/interceptors/clock"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Option configures New.
type Option func(*config) error

type config struct {
	tracerProvider trace.TracerProvider // nil: the global one, read per call
	meterProvider  metric.MeterProvider // nil: the global one
	propagator     propagation.TextMapPropagator
	clock          clock.Clock
	rawKeys        bool
}

// WithTracerProvider makes spans with tp instead of the global tracer
// provider. A no-op provider turns tracing off at no cost.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) error {
		if tp == nil {
			return errors.New("telemetry.WithTracerProvider: nil provider")
		}
		c.tracerProvider = tp
		return nil
	}
}

// WithMeterProvider records metrics with mp instead of the global meter
// provider.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) error {
		if mp == nil {
			return errors.New("telemetry.WithMeterProvider: nil provider")
		}
		c.meterProvider = mp
		return nil
	}
}

// WithPropagator injects and extracts trace context with p. By default the
// global propagator is used, and W3C Trace Context when the global one
// carries nothing (none was installed).
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(c *config) error {
		if p == nil {
			return errors.New("telemetry.WithPropagator: nil propagator")
		}
		c.propagator = p
		return nil
	}
}

// WithClock reads the time (for the deadline left at send) from c.
func WithClock(c clock.Clock) Option {
	return func(cfg *config) error {
		if c == nil {
			return errors.New("telemetry.WithClock: nil clock")
		}
		cfg.clock = c
		return nil
	}
}

// WithRawIdempotencyKey records the raw idempotency key on attempt and
// server spans (attribute failsoft.idempotency_key). Without it only a hash
// is recorded: keys can identify a user's operation and often end up in
// logs and trace stores with weaker access control than the data itself.
func WithRawIdempotencyKey() Option {
	return func(c *config) error {
		c.rawKeys = true
		return nil
	}
}
