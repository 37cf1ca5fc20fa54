// Package breaker is failsoft's circuit breaker: one breaker per target
// (the ClientConn's target), or per target and method with PerMethod, so
// that a broken dependency fails at once instead of tying up every caller.
//
// # States
//
// A breaker starts closed: calls pass and their outcomes feed its trip
// rules. When any rule fires it opens: calls fail at once, without touching
// the network, with an *outcome.Rejection (Layer "breaker", code
// UNAVAILABLE, cause ErrOpen, RetryAfter the time left until the next
// probe, rounded up to 1/64 of the open period) whose message names the
// target and when the breaker probes again. Rejections are shared between
// calls: do not modify them. When the open period ends it is
// half-open: HalfOpenProbes calls pass as probes and the rest are rejected;
// when all probes succeed it closes, and when one fails it opens again for
// twice as long, up to a cap (OpenFor).
//
// # Trip rules
//
//   - ConsecutiveFailures(n): n failures in a row.
//   - FailuresWithin(n, d): n failures within d. The rule "5 failures in
//     30 s" is FailuresWithin(5, 30*time.Second).
//   - FailureRate(r): a fraction r of the calls in a sliding window failed.
//   - SlowCallRate(r, t): a fraction r of the calls in the window took t or
//     longer.
//
// The rate rules look at a window of the last CountWindow(n) calls or the
// calls of the last TimeWindow(d), once it holds MinimumCalls calls. With no
// rule given, the default is FailureRate(0.5) over the last 100 calls with
// at least 20 calls.
//
// # What counts as a failure
//
// Results are classified by an outcome.Classifier (WithClassifier; default
// outcome.Default). Only outcome.Failure feeds the trip rules: UNAVAILABLE,
// DEADLINE_EXCEEDED, INTERNAL, UNKNOWN and DATA_LOSS by default. Successes
// count in the windows. Outcomes the caller caused (CANCELLED,
// INVALID_ARGUMENT, NOT_FOUND, ...) and rejections by other failsoft layers
// are ignored. RESOURCE_EXHAUSTED and server pushback are overload: the
// server is alive and shedding load, which the throttle and the retry
// budget handle, so by default an overloaded server never opens the
// breaker. A classifier that maps RESOURCE_EXHAUSTED to Failure changes
// that.
//
// Streams count like unary calls: a stream that fails to open counts at
// once, and one that opens counts with its final status when RecvMsg
// returns an error (io.EOF is a success), or when its single response
// arrived. The interceptor never cancels a stream's context. A half-open
// probe stream that the caller abandons gives its probe slot back when its
// context ends (through context.AfterFunc, registered for probes only).
//
// Methods whose policy sets skip_circuit_breaker are neither guarded nor
// counted.
//
// # Where it sits in the chain
//
// Inside fallback and retry, outside the bulkhead and the per-attempt
// layers: each attempt passes the breaker, so a retry against an open
// breaker fails at once, and the retry layer can tell (outcome.AsRejection)
// not to retry it against the same target; the fallback layer sees the
// rejection and answers from its chain.
//
// # Telemetry
//
// State changes go to OnStateChange hooks and to the observer as
// observe.BreakerState events, with the counts at the moment of the change;
// rejections are observe.BreakerRejected events. State and Snapshots read
// the current state for metrics.
//
// # Cost
//
// A closed breaker with a count window does not read the clock and does not
// allocate: one policy lookup, one registry lookup and a few atomic
// operations. A time window or a slow-call rule adds a clock read per call.
// An open breaker rejects without allocating: its rejections are made once
// per open period, with RetryAfter rounded up to 1/64 of the period.
package breaker
