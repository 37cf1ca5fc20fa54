// Package breaker is failsoft's circuit breaker: one breaker per target
// (the ClientConn's target) and method, so that calls to a target that
// stopped answering fail at once instead of tying up every caller, while a
// target that is only sick (flaky, overloaded, one broken method) keeps
// serving what it can.
//
// # How it decides
//
// A breaker starts closed: calls pass and their outcomes feed its trip
// rules. A rule fires only for a target that stopped answering, not for one
// that still serves a good share of its calls: cutting off a sick target
// would turn its partial failure into a total one, and retries, the retry
// budget and the adaptive throttle handle partial failures better.
//
// When a rule fires the breaker opens: calls fail at once, without touching
// the network, with an *outcome.Rejection (Layer "breaker", code
// UNAVAILABLE, cause ErrOpen, RetryAfter the time left until the next
// probe, rounded up to 1/64 of the open period) whose message names the
// target and when the breaker probes again. Rejections are shared between
// calls: do not modify them. When the open period ends it is half-open:
// the next call passes as a probe (HalfOpenProbes, default 1) and the rest
// are rejected; when the probe succeeds the breaker closes, and when it
// fails it opens again.
//
// Open periods are short and jittered: each is drawn uniformly between half
// and all of OpenFor (default 1 s, not growing when probes fail), so that
// a target that heals is used again within about a second however long
// the outage lasted, a dead target costs one probe every 0.5-1 s, and the
// clients of a fleet that tripped together do not probe in waves.
//
// # Trip rules
//
//   - FailureRate(r): a fraction r of the calls in a sliding window
//     failed, once it holds MinimumCalls calls. The default rule is
//     FailureRate(0.8) over the last 100 calls, at least 20: a dead target
//     opens its breaker after 20 calls when it served none before, and
//     after 80 when it had served the last 100.
//   - DeadAfter(n, span), on by default with whatever other rules are
//     given: n attempts in a row failed (default 20), whether or not
//     retries absorbed them, and the first ended at least span (default
//     50 ms) before the last. A target that answered none of them is
//     down; its breaker opens after 20 attempts and 50 ms even when the
//     rate rule would wait for 80 failed calls, or when retries absorb
//     most of the failures. Any other result, RESOURCE_EXHAUSTED
//     included, ends the run (a call its caller cancelled is no answer
//     and does not), and a sick target hardly ever fails 20
//     attempts in a row (a third of its attempts at random, with
//     probability 3^-20). The span is for bursts: the calls in flight
//     when a server pauses or restarts, when a proxy sheds them, or when
//     the client pauses, fail together, and the next calls succeed, so
//     such a burst, however many calls it holds, spans no time and opens
//     nothing, while a dead target goes on failing and at 250 calls a
//     second spends about 50 ms on its 20 attempts anyway. DeadAfter(0, 0)
//     turns it off.
//   - FailuresWithin(n, d): n failures within d that make at least
//     MinFailureRate (default 0.8) of the calls that ended within d (the
//     last max(100, n/rate) calls). "5 failures in 30 s" is
//     FailuresWithin(5, 30*time.Second): 5 failures from a target that
//     answers nothing else, never 5 flaky calls among thousands (3 % of
//     failures at 1,000 calls/s never open it).
//   - ConsecutiveFailures(n): n failures in a row. A run of n failures
//     comes by chance with probability p^n for a target failing a fraction p
//     of its calls: choose n with that in mind.
//   - SlowCallRate(r, t): a fraction r of the calls in the window took t or
//     longer.
//
// The rate rules look at a window of the last CountWindow(n) calls or the
// calls of the last TimeWindow(d).
//
// # What counts
//
// Results are classified by an outcome.Classifier (WithClassifier; default
// outcome.Default). Only outcome.Failure feeds the trip rules:
// UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, UNKNOWN and DATA_LOSS by
// default. Successes count in the windows. Outcomes the caller caused
// (CANCELLED, INVALID_ARGUMENT, NOT_FOUND, ...) and rejections by other
// failsoft layers are ignored. RESOURCE_EXHAUSTED and server pushback are
// overload, which the throttle and the retry budget handle, and never open
// the breaker; overload that arrives as a plain UNAVAILABLE counts as
// failures, which FailureRate and FailuresWithin leave alone while the
// target still serves a fifth of its calls, and DeadAfter while the
// refusals come in bursts shorter than its span.
//
// The rules but DeadAfter count calls as the caller sees them: a failed
// attempt that the retry layer retries (it says so with chain.State's
// MayRetry, and the code is one of the method's retryable codes) is not
// counted, since the retry absorbs it; when the retries fail too, the
// last attempt is counted. CountEveryAttempt counts every attempt. A
// failed half-open probe always counts.
//
// Each method of a target has its own breaker by default, so that one
// failing method does not cut off the others; a target that is down trips
// the breaker of each method that is called. PerTarget shares one breaker
// between a target's methods.
//
// Streams count like unary calls: a stream that fails to open counts at
// once, and one that opens counts with its final status when RecvMsg
// returns an error (io.EOF is a success), or when its single response
// arrived; a stream that has begun counts whatever the retry layer said.
// The interceptor never cancels a stream's context. A half-open probe
// stream that the caller abandons gives its probe slot back when its
// context ends (through context.AfterFunc, registered for probes only).
//
// Methods whose policy sets skip_circuit_breaker are neither guarded nor
// counted.
//
// # How many breakers
//
// About 1024 breakers are kept (WithMaxTargets). Past that, a closed
// breaker not used lately makes room for a new one, preferably one that
// counted no failure; open and probing breakers are never dropped, and a
// new target is never left unguarded: when every breaker is needed, there
// are more than WithMaxTargets for a while.
//
// # Where it sits in the chain
//
// Inside fallback, retry and the throttle, outside the bulkhead and the
// per-attempt layers: each attempt passes the breaker, so a retry against
// an open breaker fails at once, and the retry layer can tell
// (outcome.AsRejection) not to retry it against the same target; the
// fallback layer sees the rejection and answers from its chain.
//
// # Telemetry
//
// State changes go to OnStateChange hooks and to the observer as
// observe.BreakerState events, with the counts at the moment of the change;
// rejections are observe.BreakerRejected events. State and Snapshots read
// the current state for metrics, with the counts the trip rules use.
//
// # Cost
//
// A closed breaker with a count window does not read the clock for a
// call that succeeds and does not allocate: one policy lookup, one
// registry lookup and a few atomic operations. A failed attempt reads the
// clock once, for DeadAfter's span and the rules. FailuresWithin, a time
// window or a slow-call rule adds a clock read per call. An open breaker
// rejects without allocating: its rejections are made once per open
// period.
package breaker
