package pending

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/failsoft/failsoft/interceptors/idempotency"
)

// ScopeName is the instrumentation scope of the queue's tracer and meter.
const ScopeName = "github.com/failsoft/failsoft/interceptors/pending"

// Metric names. Depth, oldest age and dead are read from the store when
// the meter collects.
const (
	MetricEnqueued  = "failsoft.pending.enqueued"   // counter, by grpc.method
	MetricSettled   = "failsoft.pending.settled"    // counter, by grpc.method
	MetricDead      = "failsoft.pending.dead"       // counter, by grpc.method
	MetricDepth     = "failsoft.pending.depth"      // gauge, entries waiting
	MetricOldestAge = "failsoft.pending.oldest_age" // gauge, seconds
	MetricDeadDepth = "failsoft.pending.dead_depth" // gauge, entries in the dead-letter list
)

// SpanRedeliver is the name of a redelivery's span: a new trace, linked
// to the span of the call that was queued.
const SpanRedeliver = "failsoft.pending.redeliver"

// Span attributes of a redelivery.
const (
	AttrMethod   attribute.Key = "grpc.method"
	AttrKeyHash  attribute.Key = "failsoft.idempotency_key.hash"
	AttrAttempts attribute.Key = "failsoft.pending.attempts"
)

type telemetry struct {
	tracer                  trace.Tracer
	enqueues, settles, dies metric.Int64Counter
	reg                     metric.Registration
}

func newTelemetry(cfg *config, store Store) (*telemetry, error) {
	m := cfg.meter.Meter(ScopeName)
	t := &telemetry{tracer: cfg.tracer.Tracer(ScopeName)}
	var errs [7]error
	t.enqueues, errs[0] = m.Int64Counter(MetricEnqueued, metric.WithDescription("Calls queued because they could not be sent."))
	t.settles, errs[1] = m.Int64Counter(MetricSettled, metric.WithDescription("Queued calls delivered."))
	t.dies, errs[2] = m.Int64Counter(MetricDead, metric.WithDescription("Queued calls moved to the dead-letter list."))
	depth, err3 := m.Int64ObservableGauge(MetricDepth, metric.WithDescription("Queued calls waiting."))
	age, err4 := m.Float64ObservableGauge(MetricOldestAge, metric.WithUnit("s"), metric.WithDescription("Age of the oldest waiting call."))
	dead, err5 := m.Int64ObservableGauge(MetricDeadDepth, metric.WithDescription("Entries in the dead-letter list."))
	errs[3], errs[4], errs[5] = err3, err4, err5
	t.reg, errs[6] = m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		st, err := store.Stats(ctx)
		if err != nil {
			return err
		}
		o.ObserveInt64(depth, int64(st.Depth))
		o.ObserveInt64(dead, int64(st.Dead))
		var a float64
		if !st.Oldest.IsZero() {
			a = cfg.clock.Now().Sub(st.Oldest).Seconds()
		}
		o.ObserveFloat64(age, a)
		return nil
	}, depth, age, dead)
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *telemetry) close() error {
	if t.reg == nil {
		return nil
	}
	return t.reg.Unregister()
}

func methodAttr(method string) metric.MeasurementOption {
	return metric.WithAttributes(AttrMethod.String(method))
}

func (t *telemetry) enqueued(ctx context.Context, method string) {
	t.enqueues.Add(ctx, 1, methodAttr(method))
}
func (t *telemetry) settled(ctx context.Context, e Entry) {
	t.settles.Add(ctx, 1, methodAttr(e.Method))
}
func (t *telemetry) dead(ctx context.Context, e Entry) { t.dies.Add(ctx, 1, methodAttr(e.Method)) }

// startRedelivery starts the span of one redelivery of e, a new root
// linked to the queued call's span, and returns a function that ends it.
func (t *telemetry) startRedelivery(ctx context.Context, e Entry) (context.Context, func(error)) {
	opts := []trace.SpanStartOption{
		trace.WithNewRoot(),
		trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(AttrMethod.String(e.Method), AttrKeyHash.String(idempotency.KeyHash(e.Key)),
			AttrAttempts.Int(e.Attempts)),
	}
	if len(e.Trace) > 0 {
		orig := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier(e.Trace)))
		if orig.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: orig}))
		}
	}
	ctx, span := t.tracer.Start(ctx, SpanRedeliver, opts...)
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(otelcodes.Error, err.Error())
		}
		span.End()
	}
}
