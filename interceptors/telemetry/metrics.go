package telemetry

import (
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/metric"
)

// Bucket boundaries of gRFC A66: latency in seconds, and counts.
var (
	latencyBuckets = []float64{0, 0.00001, 0.00005, 0.0001, 0.0003, 0.0006, 0.0008, 0.001, 0.002,
		0.003, 0.004, 0.005, 0.006, 0.008, 0.01, 0.013, 0.016, 0.02, 0.025, 0.03,
		0.04, 0.05, 0.065, 0.08, 0.1, 0.13, 0.16, 0.2, 0.25, 0.3, 0.4, 0.5, 0.65,
		0.8, 1, 2, 5, 10, 20, 50, 100}
	countBuckets = []float64{0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}
)

type instruments struct {
	calls              metric.Int64Counter
	attemptStarted     metric.Int64Counter
	attemptDuration    metric.Float64Histogram
	callRetries        metric.Int64Histogram
	callRetryDelay     metric.Float64Histogram
	retries            metric.Int64Counter
	retryDelay         metric.Float64Histogram
	retryStopped       metric.Int64Counter
	hedges             metric.Int64Counter
	budgetExhausted    metric.Int64Counter
	breakerState       metric.Int64Gauge
	breakerTransitions metric.Int64Counter
	breakerRejections  metric.Int64Counter
	bulkheadRejections metric.Int64Counter
	throttleRejections metric.Int64Counter
	fallbacks          metric.Int64Counter
	deadlineFailFast   metric.Int64Counter
	keysAttached       metric.Int64Counter
	replays            metric.Int64Counter
	conflicts          metric.Int64Counter
	storeErrors        metric.Int64Counter
}

func (m *instruments) init(mt metric.Meter) error {
	var errs []error
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := mt.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	m.calls = counter(MetricCalls, "{call}", "Calls ended, by the status the caller saw, after retries and fallbacks.")
	m.attemptStarted = counter(MetricAttemptStarted, "{attempt}", "Attempts started, hedges included.")
	m.retries = counter(MetricRetries, "{retry}", "Retries scheduled after a backoff.")
	m.retryStopped = counter(MetricRetryStopped, "{call}", "Calls whose retries stopped, by reason.")
	m.hedges = counter(MetricHedges, "{hedge}", "Hedged attempts sent.")
	m.budgetExhausted = counter(MetricBudgetExhausted, "{attempt}", "Retries or hedges refused by the retry budget.")
	m.breakerTransitions = counter(MetricBreakerTransitions, "{transition}", "Circuit breaker state changes.")
	m.breakerRejections = counter(MetricBreakerRejections, "{call}", "Calls failed at once by an open circuit breaker.")
	m.bulkheadRejections = counter(MetricBulkheadRejections, "{call}", "Calls refused by a full bulkhead.")
	m.throttleRejections = counter(MetricThrottleRejections, "{call}", "Calls rejected locally by the adaptive throttle.")
	m.fallbacks = counter(MetricFallbacks, "{call}", "Calls answered by a fallback, by level.")
	m.deadlineFailFast = counter(MetricDeadlineFailFast, "{call}", "Calls failed at once because too little deadline was left.")
	m.keysAttached = counter(MetricKeysAttached, "{call}", "Idempotency keys attached to calls.")
	m.replays = counter(MetricReplays, "{call}", "Responses replayed from the idempotency store.")
	m.conflicts = counter(MetricConflicts, "{call}", "Calls refused for an idempotency key conflict, by reason.")
	m.storeErrors = counter(MetricStoreErrors, "{error}", "Failures of the idempotency store, or of storing an outcome, by where they happened.")

	var err error
	m.attemptDuration, err = mt.Float64Histogram(MetricAttemptDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of each attempt."), metric.WithExplicitBucketBoundaries(latencyBuckets...))
	errs = append(errs, err)
	m.retryDelay, err = mt.Float64Histogram(MetricRetryDelay, metric.WithUnit("s"),
		metric.WithDescription("Each backoff waited before a retry."), metric.WithExplicitBucketBoundaries(latencyBuckets...))
	errs = append(errs, err)
	m.callRetries, err = mt.Int64Histogram(MetricCallRetries, metric.WithUnit("{retry}"),
		metric.WithDescription("Retry and hedge attempts per call, the first attempt not counted (gRFC A96)."),
		metric.WithExplicitBucketBoundaries(countBuckets...))
	errs = append(errs, err)
	m.callRetryDelay, err = mt.Float64Histogram(MetricCallRetryDelay, metric.WithUnit("s"),
		metric.WithDescription("Total backoff per call while no attempt was active (gRFC A96)."),
		metric.WithExplicitBucketBoundaries(latencyBuckets...))
	errs = append(errs, err)
	m.breakerState, err = mt.Int64Gauge(MetricBreakerState, metric.WithUnit("{state}"),
		metric.WithDescription("Circuit breaker state per target: 0 closed, 1 half-open, 2 open."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("telemetry: creating instruments: %w", err)
	}
	return nil
}

// breakerStateValue maps a breaker state name to the gauge value.
func breakerStateValue(s string) int64 {
	switch s {
	case "closed":
		return 0
	case "half-open", "half_open", "halfopen":
		return 1
	case "open":
		return 2
	}
	return -1
}
