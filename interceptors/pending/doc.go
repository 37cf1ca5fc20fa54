// Package pending turns a keyed write that cannot be sent now into a
// durable pending entry, and sends it again later with the same
// idempotency key, so that the server's deduplication (package
// idempotency) makes it happen exactly once. It is the "payment pending,
// we'll confirm by e-mail" answer to an open breaker, done once in the
// library instead of in every application.
//
// # What is queued
//
// Only calls of the methods opted in with ForMethods: unary keyed writes
// whose server deduplicates by the idempotency key. A call is queued when
// it fails with a code of WithCodes (by default UNAVAILABLE,
// RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, ABORTED): an open breaker, a
// throttle, a full bulkhead or a deadline too short to try answer so
// locally (an outcome.Rejection), and a call whose retries ran out on a
// retryable code ends so. A call the caller cancelled is not queued; nor
// is any other failure, which is returned as it is.
//
// The entry holds the request in wire format, the method, the idempotency
// key, the outgoing metadata entries named with WithMetadata and the W3C
// trace context of the call. The caller gets a *Deferred error, never a
// silent success: errors.As finds it, and as a gRPC status it is
// UNAVAILABLE with a google.rpc.ErrorInfo detail (IsPending). If the store
// cannot take the entry (full: ErrFull), the caller gets a
// *NotQueuedError instead, and nothing will send the call again.
//
// Install the interceptor before failsoft.DialOptions, so that it sees each
// logical call once, after its retries. A call without a key gets one
// here, so the key the server saw is the key the entry is queued under.
// Configure no fallback for an opted-in method: a fallback answer is a
// success to this layer, and nothing would be queued.
//
// # The drainer
//
// Run (or DrainOnce, for one pass) claims due entries from the store and
// sends each through the same connection, so redeliveries pass its
// breaker, throttle and retry budget like any call and the target sees no
// extra load when it is sick. A redelivery that:
//
//   - succeeds: the entry settles, is removed, and OnSettled hears it;
//   - is answered locally with a WithCodes code (breaker still open): it
//     was not sent; the pass stops and the batch waits for the rejection's
//     RetryAfter or the first backoff, whichever is longer, without
//     counting an attempt;
//   - fails with a WithCodes code: the entry waits its backoff
//     (WithBackoff), and dies after WithLimits attempts;
//   - fails with any other code (INVALID_ARGUMENT, FAILED_PRECONDITION for a
//     key reused with a different request, ...): the server refused it for
//     good; the entry dies with the status as its reason.
//
// An entry older than WithLimits' maximum age dies before it is sent: keep
// that age below the time the server keeps its idempotency records. Dead
// entries go to the store's dead-letter list with their reason, and OnDead
// hears them; nothing is dropped silently.
//
// A dead entry's reason tells a refusal ("refused with CODE: ...") from
// the queue giving up ("gave up after ...", "older than ..."). An entry the
// queue gave up on may still have been committed by a redelivery whose
// answer was lost: treat it as unknown, not as failed, and ask the server.
//
// # Stores
//
// A Store keeps entries durably and hands them out as leases (Claim), so
// that several drainers, in one process or many, never send one entry at
// the same time, and a crashed drainer's claims come back when their lease
// ends. MemoryStore is for tests; boltstore is the embedded store of one
// process; redisstore shares one queue between client replicas. Every
// store passes the contract in package storetest.
//
// A drainer that crashes after the server committed a redelivery but
// before the store removed the entry sends it again after the lease; the
// server answers from its idempotency record, and OnSettled may then hear
// the key twice across the crash.
//
// # Telemetry
//
// The queue counts enqueued, settled and dead entries (MetricEnqueued,
// MetricSettled, MetricDead) and reports the store's depth, its oldest
// entry's age and its dead-letter count as gauges, through the OTel metric
// API. Each redelivery is a span (SpanRedeliver) in a new trace, linked to
// the span of the call that was queued; the call's own spans (the failsoft
// telemetry layer's) are its children.
package pending
