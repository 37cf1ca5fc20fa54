package checkout

// This file is the one place where the client's interceptor chain and its
// tracing are set up.

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"

	"github.com/failsoft/failsoft"
	"github.com/failsoft/failsoft/interceptors/breaker"
	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/fallback"
	"github.com/failsoft/failsoft/interceptors/idempotency"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/policy"
	"github.com/failsoft/failsoft/interceptors/retry"
	"github.com/failsoft/failsoft/interceptors/telemetry"
	paymentsv1 "github.com/failsoft/failsoft/proto/payments/v1"
)

// ChainConfig is what the checkout story asks of the chain.
type ChainConfig struct {
	// Observer hears every decision of every layer.
	Observer observe.Observer
	// Clock drives backoffs and the breaker; nil for the system clock.
	Clock clock.Clock
	// Seed seeds backoff jitter.
	Seed uint64
	// BreakerFailures failures within BreakerWindow open the breaker for
	// BreakerOpenFor (doubling up to twice that while probes fail).
	BreakerFailures int
	BreakerWindow   time.Duration
	BreakerOpenFor  time.Duration
	// OnBreaker hears breaker state changes.
	OnBreaker func(target string, from, to string)
	// TracerProvider makes the spans; nil for none (trace IDs are then
	// empty).
	TracerProvider trace.TracerProvider
	// MeterProvider records the client's metrics, the ones the alert
	// rules read; nil for none.
	MeterProvider metric.MeterProvider
}

// Chain is the client's interceptor chain.
type Chain struct {
	dial   []grpc.DialOption
	tracer trace.Tracer
}

// DialOptions returns the options that install the chain.
func (c *Chain) DialOptions() []grpc.DialOption { return c.dial }

// Methods with fallbacks or pending delivery.
var (
	methodCharge     = "/" + paymentsv1.PaymentService_ServiceDesc.ServiceName + "/Charge"
	methodGetPayment = "/" + paymentsv1.PaymentService_ServiceDesc.ServiceName + "/GetPayment"
)

// NewChain builds the chain with failsoft.DialOptions, the library's one
// entry point, which orders the layers (outermost first): deadline,
// idempotency key, fallback, retry and hedging, throttle, circuit breaker.
// What each may do with a method comes from payments.proto. The telemetry
// layer wraps them all: its call span outermost, one attempt span per
// attempt innermost, and it hears every layer's decisions as span events.
//
// The checkout story adds: a breaker that opens after BreakerFailures
// failures within BreakerWindow; a fallback that answers a payment read
// with the last good answer for it; seeded backoff jitter. A charge that
// could not be confirmed is not the chain's business: the pending queue,
// installed before the chain (see New), keeps it and sends it again.
func NewChain(cfg ChainConfig) (*Chain, error) {
	res := policy.Default()
	clk := clock.OrSystem(cfg.Clock)
	jitter := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed+1))
	var jitterMu sync.Mutex
	bopts := []breaker.Option{
		breaker.FailuresWithin(cfg.BreakerFailures, cfg.BreakerWindow),
		breaker.OpenFor(cfg.BreakerOpenFor, 2*cfg.BreakerOpenFor),
	}
	if cfg.OnBreaker != nil {
		bopts = append(bopts, breaker.OnStateChange(func(c breaker.Change) {
			cfg.OnBreaker(c.Target, c.From.String(), c.To.String())
		}))
	}
	fb := []fallback.Option{fallback.WithCache(methodGetPayment)}
	tp := cfg.TracerProvider
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	topts := []telemetry.Option{telemetry.WithTracerProvider(tp)}
	if cfg.MeterProvider != nil {
		topts = append(topts, telemetry.WithMeterProvider(cfg.MeterProvider))
	}
	opts := []failsoft.Option{
		failsoft.WithTelemetry(topts...),
		failsoft.WithResolver(res),
		failsoft.WithClock(clk),
		failsoft.WithRetry(retry.WithRand(func() float64 {
			jitterMu.Lock()
			defer jitterMu.Unlock()
			return jitter.Float64()
		})),
		failsoft.WithBreaker(bopts...),
		failsoft.WithFallback(fb...),
	}
	if cfg.Observer != nil {
		opts = append(opts, failsoft.WithObserver(cfg.Observer))
	}
	suite, err := failsoft.DialOptions(opts...)
	if err != nil {
		return nil, err
	}
	return &Chain{dial: suite, tracer: tp.Tracer("github.com/failsoft/failsoft/demo/checkout")}, nil
}

// startTrace starts the span of one operation of the checkout, under which
// the telemetry layer puts the call and attempt spans, and returns its
// trace ID for logs and a function that ends it.
func (c *Chain) startTrace(ctx context.Context, name string) (context.Context, string, func(error)) {
	ctx, span := c.tracer.Start(ctx, name)
	return ctx, traceIDOf(ctx), func(err error) {
		if err != nil {
			span.SetStatus(otelcodes.Error, err.Error())
		}
		span.End()
	}
}

// traceIDOf returns the trace ID of the span in ctx, or "" without one.
func traceIDOf(ctx context.Context) string {
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		return sc.TraceID().String()
	}
	return ""
}

// NewKey returns a fresh idempotency key.
func NewKey() string { return idempotency.NewKey() }
