// Package throttle is client-side adaptive throttling per target, after the
// Google SRE book's "Handling Overload": when a target has been refusing
// work, the client refuses part of its own calls locally, at once, instead
// of sending them to be refused.
//
// # How it decides
//
// For each target (a ClientConn's Target()) the throttle counts, over a
// recent window,
//
//   - requests: every call that went through it, those it sent and
//     finished and those it rejected itself;
//   - accepts: the calls the target accepted, that is whose result was not
//     a refusal (see What counts as accepted);
//
// and rejects the next call with probability
//
//	min(cap, max(0, (requests - K*accepts) / (requests + 1)))
//
// drawn from a uniform random number. While the target accepts more than
// one call in K, nothing is rejected and no random number is drawn. Under
// overload the calls that get through settle near K times what the target
// accepts: with K = 2, a client offering 4x what the server can take sends
// it about 2x, and a client offering 1.5x is not throttled at all (its
// rejected calls are few enough to be worth sending). The cap keeps a share
// of calls going to a target that accepts nothing, so its recovery is seen.
//
// A local rejection is an *outcome.Rejection with Layer "throttle", Code
// RESOURCE_EXHAUSTED and a message that says the client throttled itself,
// with the probability and the counts; it is reported to the observer as an
// observe.Throttled event whose Value is the probability.
//
// # Defaults
//
//   - K = 2 (WithMultiplier), the SRE book's value: a server that recovers
//     is noticed quickly and at most about half of the calls it sees are
//     wasted on rejections.
//   - cap 0.9 (WithMaxProbability).
//   - window 2 minutes in 10 buckets of 12 s (WithWindow), the book's two
//     minutes: long enough that a burst of refusals does not swing the
//     probability, short enough to follow a server's capacity as it
//     changes. The window moves on a bucket at a time, so it forgets a
//     tenth of its history at once.
//   - failures count as refusals while the target still answers
//     (WithFailuresAsRejects): overload often arrives as a plain
//     UNAVAILABLE; a target that answers nothing is the breaker's.
//   - about 1024 targets tracked (WithMaxTargets).
//
// The throttle's own rejections count as requests without accepts, so it
// lets load back in gradually when a target recovers: after a target that
// refused everything (with RESOURCE_EXHAUSTED or pushback) serves again, the share of calls sent grows from the
// cap's 10% and the throttle stops rejecting after about two windows (218 s
// with the defaults in this package's simulation, which serves 31% of the
// calls meanwhile). A shorter window recovers faster; a fallback can answer
// the calls rejected meanwhile.
//
// # What counts as accepted
//
// Results are classified by outcome.Default (changed with WithClassifier):
//
//   - Success and Ignored count as accepted. Ignored results are the
//     caller's own (INVALID_ARGUMENT, NOT_FOUND, CANCELLED, ...): the
//     target did its work, and refusing calls because of them would punish
//     the caller twice.
//   - Overload (RESOURCE_EXHAUSTED, or any error marked as carrying server
//     pushback) is not accepted: this is what the throttle exists for.
//   - Failure (UNAVAILABLE, INTERNAL, UNKNOWN, DATA_LOSS, DEADLINE_EXCEEDED)
//     is not accepted while the target still answers: while it did the
//     work of a call sent within the last second, and once the window
//     holds 20 requests. Envoy's overflow and overload answers and many
//     concurrency limiters refuse excess calls with a plain UNAVAILABLE;
//     a target that still serves a good share of its calls is overloaded,
//     whatever the code of the others, and the client sheds its load in
//     proportion. Such a failure is only presumed a refusal, and the
//     presumption ends when the target is seen dead (a call sent a second
//     or more after its latest answer fails) or heals (it answers after
//     being seen dead, or after a second or more in which calls only
//     failed): every presumed refusal in the window, and every local
//     rejection, is then forgotten, and failures of calls sent before
//     count as accepted. A dead target's failures count as accepted too,
//     since an outage is the breaker's business: holding it against the
//     target would make the throttle reject calls for a window after it
//     healed, while the throttle's own rejections kept its probability up.
//     After a heal only RESOURCE_EXHAUSTED, pushback and the failures
//     since weigh. The 20 requests keep a few
//     unlucky failures of a flaky target at a low rate from looking like
//     overload. A target that fails less than 1 - 1/K of its calls (half,
//     with K = 2) is never throttled: 3 % or 20 % of failing calls, or one
//     failing method of three, are not overload. WithFailuresAsRejects(false) counts every failure as
//     accepted, so that only RESOURCE_EXHAUSTED and pushback throttle.
//   - An *outcome.Rejection returned by a layer closer to the network (an
//     open breaker, a full bulkhead) is not counted at all: the target
//     never saw the call.
//
// The throttle does not read trailers: it sees pushback only when an inner
// layer marks the error (outcome's Overloaded marker), or when the code
// that comes with it is classified Overload.
//
// # Signals: overload is not an outage
//
// failsoft sorts what a call's result says about its target in one place,
// outcome.Classifier, so that the throttle, the retry budget and the
// circuit breaker agree:
//
//   - Overload signals say the target is alive and shedding load:
//     RESOURCE_EXHAUSTED, server pushback (a grpc-retry-pushback-ms trailer
//     or google.rpc.RetryInfo), and failures of a target that still
//     answers other calls.
//     They feed this throttle and the per-target retry budget, which keep
//     the load that reaches the server near what is offered. They must not
//     open the breaker: an overloaded server that is cut off delivers no
//     goodput at all while it sits idle.
//   - Broken or unreachable signals say the target cannot do the work:
//     connection failures, attempt timeouts, storms of INTERNAL or UNKNOWN.
//     They feed the breaker's trip rules.
//   - The caller's own errors say nothing about the target; local
//     rejections by a failsoft layer are never counted by another.
//
// outcome.Default maps RESOURCE_EXHAUSTED to Overload, and any error that
// carries pushback is Overload whatever its code. A bare UNAVAILABLE stays
// Failure, since grpc-go reports a refused connection with the same code:
// the throttle tells an overloaded target from a dead one by whether it
// still answers, and the breaker by the share of calls that fail (it
// trips only when a target serves almost nothing). Servers that shed load
// with UNAVAILABLE are best served by sending pushback too, which makes
// the answer of a live server recognisable at once.
//
// Users change the classification with their own outcome.Classifier, given
// to each layer (here with WithClassifier); for example, for servers that
// answer "try later" with ABORTED:
//
//	cl := outcome.Default.With(codes.Aborted, outcome.Overload)
//	t, err := throttle.New(throttle.WithClassifier(cl))
//
// # Where it sits in the chain
//
// Inside the retry layer, so that every attempt (retries and hedges too) is
// a request and is throttled: the SRE book counts retries as requests,
// which is what keeps a retrying client from multiplying an overload. A
// throttled attempt fails fast with RESOURCE_EXHAUSTED and a Rejection; a
// retry layer should not retry it at once. Inside or outside the breaker
// both count correctly, since each layer ignores the other's rejections;
// the suggested order is retry, throttle, breaker, bulkhead, so that calls
// the throttle rejects never take a breaker probe or a bulkhead slot.
//
// # Calls and streams
//
// A call counts when it ends, in the bucket it started in (which spares a
// clock read), so a call that outlives the window may go uncounted.
//
// Opening a stream is throttled like a unary call. Its result counts once:
// a failure to open it, or its final status (RecvMsg's error, io.EOF being
// success; for streams without server streaming, RecvMsg returning the
// response). A stream abandoned before its end is not counted. The
// interceptor starts no goroutine and never cancels a context.
//
// # Cost
//
// Per call: one clock read (a monotonic read only, on the system clock), a
// sum over the buckets' atomic counters (when the window holds a refusal)
// and one or two compare-and-swaps to count the result; no lock and no allocation on the path of a unary call
// that is sent (a stream allocates its wrapper), and a random number only
// while the probability is above zero. Each tracked target holds 16 bytes
// a bucket. Targets are registered on first use (the only lock, taken once
// per target). Past WithMaxTargets, a target not called lately makes room
// for a new one, preferably one whose window holds no refusal; a new
// target is never left unthrottled.
package throttle
