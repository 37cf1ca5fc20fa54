package telemetry

import (
	"context"

	"github.com/failsoft/failsoft/interceptors/observe"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Observe turns a failsoft event into a span event or attribute on the span
// of ctx (the call, attempt or server span, whichever the reporting layer
// sits inside) and into metrics. With no recording span and no metric
// reader it returns without allocating.
func (i *Interceptor) Observe(ctx context.Context, e observe.Event) {
	span := trace.SpanFromContext(ctx)
	if span.IsRecording() {
		i.spanEvent(span, e)
	}
	i.record(ctx, e)
}

// Wants reports whether Observe would use an event of kind k on ctx: when
// k's metric is enabled, or, for the kinds that become span events or
// attributes, when the span on ctx records. It makes the Interceptor an
// observe.Selector.
func (i *Interceptor) Wants(ctx context.Context, k observe.Kind) bool {
	m := &i.m
	switch k {
	case observe.AttemptStart:
		return m.attemptStarted.Enabled(ctx)
	case observe.AttemptEnd:
		return m.attemptDuration.Enabled(ctx)
	case observe.DeadlineSet:
		return trace.SpanFromContext(ctx).IsRecording()
	case observe.KeyAttached:
		return m.keysAttached.Enabled(ctx) || trace.SpanFromContext(ctx).IsRecording()
	}
	// The other kinds are rare: decisions on a failing call.
	return true
}

func (i *Interceptor) spanEvent(span trace.Span, e observe.Event) {
	target := Target.String(e.Target)
	switch e.Kind {
	case observe.Backoff:
		span.AddEvent(EventBackoff, trace.WithAttributes(Attempt.Int(e.Attempt),
			BackoffMS.Float64(ms(e.Duration)), BackoffReason.String(e.Reason)))
	case observe.RetryStopped:
		span.AddEvent(EventRetryStopped, trace.WithAttributes(Reason.String(e.Reason), Attempt.Int(e.Attempt)))
	case observe.Hedge:
		span.AddEvent(EventHedge, trace.WithAttributes(Attempt.Int(e.Attempt), DelayMS.Float64(ms(e.Duration))))
	case observe.BudgetExhausted:
		span.AddEvent(EventBudgetExhausted, trace.WithAttributes(target, Attempt.Int(e.Attempt)))
	case observe.BreakerState:
		span.AddEvent(EventBreakerState, trace.WithAttributes(target,
			BreakerFrom.String(e.From), BreakerTo.String(e.To),
			attribute.Int64("failsoft.breaker.failures", int64(e.Counts.Failures)),
			attribute.Int64("failsoft.breaker.requests", int64(e.Counts.Requests))))
	case observe.BreakerRejected:
		state := e.To
		if state == "" {
			state = "open"
		}
		span.AddEvent(EventBreakerRejected, trace.WithAttributes(target, BreakerState.String(state)))
	case observe.BulkheadRejected:
		span.AddEvent(EventBulkheadRejected, trace.WithAttributes(target))
	case observe.Throttled:
		span.AddEvent(EventThrottled, trace.WithAttributes(target, Probability.Float64(e.Value)))
	case observe.Fallback:
		span.AddEvent(EventFallback, trace.WithAttributes(FallbackLevel.String(e.Reason)))
		span.SetAttributes(FallbackLevel.String(e.Reason))
	case observe.DeadlineSet:
		span.SetAttributes(DeadlineRemainingMS.Float64(ms(e.Duration)))
	case observe.DeadlineFailFast:
		span.AddEvent(EventDeadlineFailFast, trace.WithAttributes(DeadlineRemainingMS.Float64(ms(e.Duration))))
	case observe.KeyAttached:
		// Reason is the key's hash: observe never carries the key itself.
		span.SetAttributes(KeyHash.String(e.Reason))
		span.AddEvent(EventKeyAttached, trace.WithAttributes(KeyHash.String(e.Reason)))
	case observe.Replay:
		span.AddEvent(EventReplay, trace.WithAttributes(KeyHash.String(e.Reason)))
	case observe.KeyConflict:
		span.AddEvent(EventKeyConflict, trace.WithAttributes(Reason.String(e.Reason)))
	case observe.KeyStoreError:
		attrs := []attribute.KeyValue{Reason.String(e.Reason)}
		if e.Err != nil {
			attrs = append(attrs, ExceptionMessage.String(e.Err.Error()))
		}
		span.AddEvent(EventKeyStoreError, trace.WithAttributes(attrs...))
	}
}

// record updates the metrics for e. Each instrument is asked whether it is
// enabled before any attribute set is built.
func (i *Interceptor) record(ctx context.Context, e observe.Event) {
	m := &i.m
	switch e.Kind {
	case observe.AttemptStart:
		if m.attemptStarted.Enabled(ctx) {
			m.attemptStarted.Add(ctx, 1, metric.WithAttributes(Method.String(rpcName(e.Method)),
				Target.String(e.Target), Hedge.Bool(e.Hedge)))
		}
	case observe.AttemptEnd:
		if m.attemptDuration.Enabled(ctx) {
			m.attemptDuration.Record(ctx, e.Duration.Seconds(), metric.WithAttributes(
				Method.String(rpcName(e.Method)), Target.String(e.Target), Status.String(codeName(e.Err))))
		}
	case observe.Backoff:
		if m.retries.Enabled(ctx) {
			m.retries.Add(ctx, 1, methodTargetReason(e))
		}
		if m.retryDelay.Enabled(ctx) {
			m.retryDelay.Record(ctx, e.Duration.Seconds(), methodTargetReason(e))
		}
	case observe.RetryStopped:
		addIf(ctx, m.retryStopped, e, methodTargetReason)
	case observe.Hedge:
		addIf(ctx, m.hedges, e, methodTarget)
	case observe.BudgetExhausted:
		addIf(ctx, m.budgetExhausted, e, methodTarget)
	case observe.BreakerState:
		if m.breakerTransitions.Enabled(ctx) {
			m.breakerTransitions.Add(ctx, 1, metric.WithAttributes(Target.String(e.Target),
				BreakerFrom.String(e.From), BreakerTo.String(e.To)))
		}
		if v := breakerStateValue(e.To); v >= 0 && m.breakerState.Enabled(ctx) {
			m.breakerState.Record(ctx, v, metric.WithAttributes(Target.String(e.Target)))
		}
	case observe.BreakerRejected:
		addIf(ctx, m.breakerRejections, e, methodTarget)
	case observe.BulkheadRejected:
		addIf(ctx, m.bulkheadRejections, e, methodTarget)
	case observe.Throttled:
		addIf(ctx, m.throttleRejections, e, methodTarget)
	case observe.Fallback:
		if m.fallbacks.Enabled(ctx) {
			m.fallbacks.Add(ctx, 1, metric.WithAttributes(Method.String(rpcName(e.Method)),
				Target.String(e.Target), FallbackLevel.String(e.Reason)))
		}
	case observe.DeadlineFailFast:
		addIf(ctx, m.deadlineFailFast, e, methodTarget)
	case observe.KeyAttached:
		addIf(ctx, m.keysAttached, e, methodTarget)
	case observe.Replay:
		if m.replays.Enabled(ctx) {
			m.replays.Add(ctx, 1, metric.WithAttributes(Method.String(rpcName(e.Method))))
		}
	case observe.KeyConflict:
		if m.conflicts.Enabled(ctx) {
			m.conflicts.Add(ctx, 1, metric.WithAttributes(Method.String(rpcName(e.Method)), Reason.String(e.Reason)))
		}
	case observe.KeyStoreError:
		if m.storeErrors.Enabled(ctx) {
			m.storeErrors.Add(ctx, 1, metric.WithAttributes(Method.String(rpcName(e.Method)), Reason.String(e.Reason)))
		}
	}
}

// The helpers below build measurement attributes; callers check Enabled
// first, so a disabled instrument costs no allocation.

func methodTarget(e observe.Event) metric.MeasurementOption {
	return metric.WithAttributes(Method.String(rpcName(e.Method)), Target.String(e.Target))
}

func methodTargetReason(e observe.Event) metric.MeasurementOption {
	return metric.WithAttributes(Method.String(rpcName(e.Method)), Target.String(e.Target), Reason.String(e.Reason))
}

func addIf(ctx context.Context, c metric.Int64Counter, e observe.Event, attrs func(observe.Event) metric.MeasurementOption) {
	if c.Enabled(ctx) {
		c.Add(ctx, 1, attrs(e))
	}
}
