// Package telemetry traces and measures every failsoft decision with
// OpenTelemetry: one trace per logical call, one child span per attempt,
// span events for breaker, budget, fallback, deadline and idempotency
// decisions, and metrics for all of them.
//
// # Why not the otelgrpc stats handler alone
//
// A stats handler sees attempts, not calls: with retries in interceptors it
// starts one root span per attempt, so a retried call is split across as
// many traces. Here the call interceptor opens the call span before the
// retry layer runs, and the attempt interceptor opens a child per attempt
// inside it. The otelgrpc handler can still run below them; its spans then
// nest under the attempt spans.
//
// # Where it sits in the chain
//
//	telemetry.UnaryClientInterceptor    call span (outermost)
//	  fallback, deadline, retry/hedge   report through Observe
//	    telemetry.UnaryAttemptInterceptor  attempt span, injects traceparent
//	      breaker, bulkhead, throttle   report through Observe
//
// The Interceptor is also an observe.Observer: pass it to each layer's
// WithObserver. An event lands on the span of the context it is reported
// with, so a backoff appears on the call span and a breaker rejection on
// the attempt span it refused. On the server, chain
// UnaryServerInterceptor (or StreamServerInterceptor) first; it continues
// the client's trace from the incoming metadata, and the idempotency layer's
// replay and conflict events land on its span.
//
// # Spans
//
// The call span is the RPC client span of the OpenTelemetry semantic
// conventions, with the attributes otelgrpc emits: name "pkg.Service/Method",
// rpc.system.name "grpc", rpc.method, server.address, server.port and
// rpc.response.status_code, plus failsoft.attempts and failsoft.outcome.
// Attempt spans are named "Attempt.pkg.Service/Method" (gRFC A72) and carry
// failsoft.attempt, previous-rpc-attempts, failsoft.attempt.hedge,
// failsoft.attempt.backoff_ms and backoff_reason, failsoft.attempt.timeout_ms,
// failsoft.deadline.remaining_ms (time left at send), the status code, the
// outcome class and, for a local rejection, failsoft.rejected_by. Server
// spans carry the semantic-convention attributes and the hash of the
// idempotency key. The raw key is recorded only with WithRawIdempotencyKey.
// The names are the exported constants of this package.
//
// # Metrics
//
// All under failsoft.client.* (and failsoft.server.* for the idempotency
// store), with gRFC A66's grpc.method, grpc.target and grpc.status labels;
// the per-call histograms failsoft.client.call.retries and
// failsoft.client.call.retry_delay mirror A96's grpc.client.call.* ones,
// and the counter failsoft.client.calls counts calls by the status their
// caller saw, after retries and fallbacks (what an error budget is about).
// See the Metric* constants for the full list, units and labels. The
// per-call metrics need both client interceptors; all other metrics come
// from Observe.
//
// # With otelgrpc
//
// A server that already traces calls with otelgrpc's stats handler
// (grpc.StatsHandler(otelgrpc.NewServerHandler())) gets one server span per
// call: the stats handler runs before any interceptor, and the server
// interceptor adds failsoft's attributes and events to the recording span it
// finds on the context instead of starting a sibling; the stats handler
// keeps ending it and setting its status. On the client, otelgrpc's stats
// handler makes a span per attempt as grpc-go sends it, below failsoft's
// call and attempt spans; keep both or drop one, they do not clash.
//
// # Defaults and cost
//
// Without options, the global tracer provider, meter provider and
// propagator are used, read when each call starts, so the interceptor may be
// built before the SDK is installed. While the global providers are the
// no-op defaults, no span is started, no attribute is built and nothing is
// allocated: each interceptor costs a few nanoseconds. Trace context is
// injected with the global propagator, or W3C Trace Context when none was
// installed, so server spans join the trace without extra setup.
package telemetry
