package telemetry

import "go.opentelemetry.io/otel/attribute"

// ScopeName is the instrumentation scope of every tracer and meter the
// package creates.
const ScopeName = "github.com/failsoft/failsoft/interceptors/telemetry"

// Span attribute keys. The rpc.* and server.* keys are the OpenTelemetry RPC
// semantic conventions as otelgrpc emits them; PreviousAttempts is gRFC
// A72's name; the failsoft.* keys are this package's own.
const (
	// RPCSystemName is "grpc" on every span.
	RPCSystemName attribute.Key = "rpc.system.name"
	// RPCMethod is the full method without its leading slash,
	// "pkg.Service/Method".
	RPCMethod attribute.Key = "rpc.method"
	// RPCResponseStatusCode is the status code name, "OK", "UNAVAILABLE".
	RPCResponseStatusCode attribute.Key = "rpc.response.status_code"
	// ServerAddress and ServerPort come from the ClientConn target.
	ServerAddress attribute.Key = "server.address"
	ServerPort    attribute.Key = "server.port"

	// Attempt is the attempt number, 1 for the first (attempt spans).
	Attempt attribute.Key = "failsoft.attempt"
	// PreviousAttempts is Attempt-1, named as in gRFC A72.
	PreviousAttempts attribute.Key = "previous-rpc-attempts"
	// Attempts is the number of attempts a call made (call spans).
	Attempts attribute.Key = "failsoft.attempts"
	// Hedge says an attempt was sent as a hedge.
	Hedge attribute.Key = "failsoft.attempt.hedge"
	// BackoffMS is the wait before an attempt in milliseconds.
	BackoffMS attribute.Key = "failsoft.attempt.backoff_ms"
	// BackoffReason says why it waited that long: "policy" or "pushback".
	BackoffReason attribute.Key = "failsoft.attempt.backoff_reason"
	// TimeoutMS is the per-attempt timeout in milliseconds, when one is set.
	TimeoutMS attribute.Key = "failsoft.attempt.timeout_ms"
	// DeadlineRemainingMS is the time left before the deadline when the
	// attempt (or call) was sent.
	DeadlineRemainingMS attribute.Key = "failsoft.deadline.remaining_ms"
	// Outcome is the outcome class of an attempt or call: "success",
	// "ignored", "overload" or "failure".
	Outcome attribute.Key = "failsoft.outcome"
	// RejectedBy names the failsoft layer that answered locally
	// ("breaker", "bulkhead", "throttle", "budget", "deadline").
	RejectedBy attribute.Key = "failsoft.rejected_by"
	// KeyHash is a hash of the call's idempotency key.
	KeyHash attribute.Key = "failsoft.idempotency_key.hash"
	// Key is the raw idempotency key, only with WithRawIdempotencyKey.
	Key attribute.Key = "failsoft.idempotency_key"

	// Attributes of span events and metrics.
	Target attribute.Key = "grpc.target" // ClientConn target (A66)
	Method attribute.Key = "grpc.method" // full method, metrics (A66)
	Status attribute.Key = "grpc.status" // status code name, metrics (A66)
	Reason attribute.Key = "failsoft.reason"
	// ExceptionMessage is an error's text, named as in the OpenTelemetry
	// semantic conventions.
	ExceptionMessage attribute.Key = "exception.message"
	BreakerFrom      attribute.Key = "failsoft.breaker.from"
	BreakerTo        attribute.Key = "failsoft.breaker.to"
	BreakerState     attribute.Key = "failsoft.breaker.state"
	FallbackLevel    attribute.Key = "failsoft.fallback.level"
	DelayMS          attribute.Key = "failsoft.delay_ms"
	Probability      attribute.Key = "failsoft.throttle.probability"
)

// Span event names.
const (
	EventBackoff          = "failsoft.backoff"
	EventRetryStopped     = "failsoft.retry.stopped"
	EventHedge            = "failsoft.hedge"
	EventBudgetExhausted  = "failsoft.budget.exhausted"
	EventBreakerState     = "failsoft.breaker.state_change"
	EventBreakerRejected  = "failsoft.breaker.rejected"
	EventBulkheadRejected = "failsoft.bulkhead.rejected"
	EventThrottled        = "failsoft.throttle.rejected"
	EventFallback         = "failsoft.fallback"
	EventDeadlineFailFast = "failsoft.deadline.fail_fast"
	EventKeyAttached      = "failsoft.idempotency.key_attached"
	EventReplay           = "failsoft.idempotency.replay"
	EventKeyConflict      = "failsoft.idempotency.conflict"
	EventKeyStoreError    = "failsoft.idempotency.store_error"
)

// Metric names, one namespace: failsoft.client.* for what a client decides,
// failsoft.server.* for the idempotency store on the server. Names and
// units follow gRFC A66/A96 where the two overlap (attempt.started,
// attempt.duration, call.retries, call.retry_delay).
const (
	MetricCalls              = "failsoft.client.calls"                    // counter {call}, as the caller saw it: grpc.method, grpc.target, grpc.status
	MetricAttemptStarted     = "failsoft.client.attempt.started"          // counter {attempt}: grpc.method, grpc.target, failsoft.attempt.hedge
	MetricAttemptDuration    = "failsoft.client.attempt.duration"         // histogram s: grpc.method, grpc.target, grpc.status
	MetricCallRetries        = "failsoft.client.call.retries"             // histogram {retry} per call: grpc.method, grpc.target
	MetricCallRetryDelay     = "failsoft.client.call.retry_delay"         // histogram s per call: grpc.method, grpc.target
	MetricRetries            = "failsoft.client.retries"                  // counter {retry}: grpc.method, grpc.target, failsoft.reason
	MetricRetryDelay         = "failsoft.client.retry.delay"              // histogram s per backoff: grpc.method, grpc.target, failsoft.reason
	MetricRetryStopped       = "failsoft.client.retry.stopped"            // counter {call}: grpc.method, grpc.target, failsoft.reason
	MetricHedges             = "failsoft.client.hedges"                   // counter {hedge}: grpc.method, grpc.target
	MetricBudgetExhausted    = "failsoft.client.budget.exhausted"         // counter {attempt}: grpc.method, grpc.target
	MetricBreakerState       = "failsoft.client.breaker.state"            // gauge 0 closed, 1 half-open, 2 open: grpc.target
	MetricBreakerTransitions = "failsoft.client.breaker.transitions"      // counter: grpc.target, failsoft.breaker.from, failsoft.breaker.to
	MetricBreakerRejections  = "failsoft.client.breaker.rejections"       // counter {call}: grpc.method, grpc.target
	MetricBulkheadRejections = "failsoft.client.bulkhead.rejections"      // counter {call}: grpc.method, grpc.target
	MetricThrottleRejections = "failsoft.client.throttle.rejections"      // counter {call}: grpc.method, grpc.target
	MetricFallbacks          = "failsoft.client.fallbacks"                // counter {call}: grpc.method, grpc.target, failsoft.fallback.level
	MetricDeadlineFailFast   = "failsoft.client.deadline.fail_fast"       // counter {call}: grpc.method, grpc.target
	MetricKeysAttached       = "failsoft.client.idempotency.keys"         // counter {call}: grpc.method, grpc.target
	MetricReplays            = "failsoft.server.idempotency.replays"      // counter {call}: grpc.method
	MetricConflicts          = "failsoft.server.idempotency.conflicts"    // counter {call}: grpc.method, failsoft.reason
	MetricStoreErrors        = "failsoft.server.idempotency.store_errors" // counter {error}: grpc.method, failsoft.reason
)
