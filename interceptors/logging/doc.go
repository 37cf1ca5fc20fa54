// Package logging writes failsoft's resilience decisions to a log/slog
// logger: a breaker opening and closing, retries given up, a budget
// refusing a retry, a fallback answering, calls shed locally, idempotency
// key conflicts and store errors, and calls that needed many attempts to
// succeed, even though they did: that is a symptom too.
//
// Each record carries the call's trace_id and span_id (so that the log
// leads to the trace), its grpc.method and grpc.target, and what the event
// says (attempt, reason, error, breaker states). A successful call logs
// nothing. The levels are those a production service wants:
//
//	ERROR  the idempotency store failed
//	WARN   breaker opened; retries exhausted or stopped by deadline or
//	       budget; budget exhausted; fallback served; call rejected by
//	       breaker, throttle, bulkhead or deadline; key conflict; a call
//	       that needed at least WithManyAttempts attempts
//	INFO   breaker half-open or closed again; retries stopped for other
//	       reasons (pushback, a committed stream, the replay buffer)
//	DEBUG  everything else (attempts, backoffs, hedges, deadlines, keys,
//	       replays), only when the logger enables it
//
// An outage turns every call into the same warning, so records are rate
// limited per event kind and target: at most a burst of them per
// interval, and the first record after a quiet spell says how many were
// suppressed (the suppressed attribute).
//
// An Observer plugs into the suite with failsoft.WithObserver (or
// WithServerObserver on a server). It is an observe.Selector, so layers
// skip building events that the logger's level would drop.
package logging
