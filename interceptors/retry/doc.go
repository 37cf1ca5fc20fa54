// Package retry retries and hedges gRPC client calls, unary and streaming,
// for the methods whose proto says that repeating them is safe.
//
//	ic, err := retry.New()
//	conn, err := grpc.NewClient(target,
//		grpc.WithDisableRetry(), // see "grpc-go's own retries" below
//		grpc.WithChainUnaryInterceptor(ic.UnaryClientInterceptor()),
//		grpc.WithChainStreamInterceptor(ic.StreamClientInterceptor()))
//
// # A call's journey
//
// A call reaches this layer from the ones outside it (in the failsoft suite:
// call telemetry, deadline, idempotency key, fallback) with the call's
// deadline in chain.State or on its context. The opening steps, the same
// for unary calls and streams (call.go), resolve the method's policy,
// credit the target's retry budget, read the call's options and decide how
// many attempts the call may have. Each attempt then gets a context with
// its number, its observe.Attempt, one deadline (the earlier of the
// call's and the attempt's own timeout, which only an attempt a retry
// could follow has: timer.go) and the State's MayRetry; it goes through
// the layers inside (throttle, breaker, bulkhead, attempt
// telemetry, pushback marking) to grpc-go, which sends it on the wire. A
// failure is judged by its code, its pushback (pushback.go) and the
// deadline; the next attempt waits for its backoff (backoff.go) and a
// budget token (budget.go). Hedged calls run their attempts side by side
// (hedge.go); streams replay what they sent (stream.go).
//
// # Who is retried
//
// The method's policy (package policy) decides. A call is retried only when
// the method is IDEMPOTENT or NO_SIDE_EFFECTS (the standard
// `option idempotency_level`, or failsoft's own method option), or when it
// requires an idempotency key and the call's outgoing metadata carries one
// (policy.KeyMetadata), whatever its idempotency level says: the server
// deduplicates by the key. Every other call gets exactly one attempt from this
// interceptor. A method whose options are invalid fails with
// FAILED_PRECONDITION and the resolver's error.
//
// A failed attempt is retried when its status code is one of the policy's
// retryable codes (by default UNAVAILABLE only), with three exceptions:
//
//   - DEADLINE_EXCEEDED is retried only when the attempt ended because of
//     its own per-attempt timeout, whatever the code list says: the timer
//     fired, or the server, which got the attempt's deadline, answered
//     DEADLINE_EXCEEDED in the second half of the attempt while the call
//     still had time (failsoft's own server keeps a safety margin and
//     answers a moment before the client's timer would fire). Never when
//     the caller's deadline expired, nor when a server answers it early.
//   - CANCELED is never retried, nor is anything once the caller's context
//     is done.
//   - An *outcome.Rejection (an open circuit breaker, a full bulkhead, a
//     throttle: a layer inside this one that answered without sending) is
//     returned at once: asking the same target again would get the same
//     answer.
//
// # Backoff
//
// Exponential backoff with full jitter: the wait before retry n (n = 1 for
// the second attempt) is drawn uniformly from
//
//	[0, min(max_backoff, initial_backoff * multiplier^(n-1)))
//
// Base, cap and multiplier come from the policy (suite defaults 50 ms, 2 s
// and 2; set them per method or service in the proto, or with
// policy.WithDefaults, WithService or WithMethod) and can be replaced for
// one call with WithBackoff. Max attempts counts the first attempt: 3, the
// suite default, means one call and at most two retries.
//
// Each attempt may have a per-attempt timeout (policy
// retry.per_attempt_timeout, or WithAttemptTimeout), inside the caller's
// deadline. An attempt gets it only when a retry could follow it (attempts
// remain, the budget has a token, the deadline leaves room for the timeout
// and min_budget): cutting an attempt that nothing follows would only turn
// a slow answer into a failure, so such an attempt runs to the call's
// deadline. An attempt cut by its timeout is always retried, its token
// taken even if other calls emptied the budget meanwhile (the overshoot is
// the attempts in flight when it ran out); the breaker does not count the
// cut as a failure, as the target had not answered yet. Before every wait the interceptor checks the caller's deadline:
// if the wait would leave no time for another attempt (less than the
// policy's min_budget, or nothing), it returns the last error at once as a
// *StopError whose message says that retries were cut short by the
// deadline. A deadline that expires during a wait ends it with
// DEADLINE_EXCEEDED; a cancellation with CANCELED.
//
// # Server pushback
//
// A server can say when to retry. The trailer grpc-retry-pushback-ms
// (PushbackMetadata) has gRFC A6 semantics: exactly one non-negative decimal
// integer is the exact wait in milliseconds, replacing the backoff (and
// resetting its exponent); a negative, malformed or repeated value means do
// not retry. Without the trailer, a google.rpc.RetryInfo in the status
// details works the same way: a valid non-negative retry_delay is the
// exact wait; an invalid or negative one, or two RetryInfos, mean do not
// retry. Pushback never makes a non-retryable code retryable, and the
// deadline check and the budget still apply.
//
// # Pushback is overload
//
// Pushback comes from a live server that sheds load, whatever the status
// code with it: UNAVAILABLE with a pushback is an overloaded server, not a
// broken one. The layers inside this one (circuit breaker, throttle) see
// only an attempt's error, not its trailer, so UnaryPushbackInterceptor and
// StreamPushbackInterceptor, chained inside them, mark a failed attempt
// whose trailer holds grpc-retry-pushback-ms (any value: even one that says
// "do not retry" comes from a live server) or whose status holds a
// google.rpc.RetryInfo with a delay, as outcome.MarkOverloaded does, so
// that outcome's classification says Overload. The marked error keeps the
// attempt's status (code, message, details), so this layer, outside, reads
// the same pushback and returns the same status; the marking reaches the
// caller too, where status.FromError and status.Code see the server's
// status unchanged. They need no configuration: they read the trailer
// through the attempt's last grpc.Trailer option when it has one (the
// caller's, or the one this layer puts in an attempt that carries its
// observe.Attempt) and add one of their own otherwise (from a pool, so
// that a unary attempt that succeeds costs no allocation; a stream costs
// its wrapper). A marked error carries the pushback it was marked for,
// which is where this layer reads a unary attempt's (a stream's is read
// from its attempt's trailer). This package's interceptors chain the
// marking inside themselves, so that used alone they read pushback too
// and their errors are marked as the suite's are (marking twice is
// harmless).
//
// # Retry budget
//
// Each target (cc.Target()) has a budget that limits the retries and hedges
// that add load without doing work, so that an outage cannot multiply the
// load on a struggling server, while retries that work are never refused.
// Over a sliding window of TTL (default 10 s), every call deposits Ratio
// tokens (default 0.1) and a floor adds MinPerSecond tokens per second
// (default 1); every retry or hedge takes a token, and a retry that
// succeeds gives its token back. A retry or hedge that finds less than one
// token is not sent.
//
// Finagle and Linkerd allow 20% of calls plus 10 retries a second over
// 10 s; Envoy 20% of active requests, at least 3. Those budgets count
// every retry, so a fault that fails 20% of calls at random spends more
// than they allow and the retries that would have worked are refused.
// Refunding the productive ones keeps them all (with 20% random failures,
// success is that of unbudgeted three-attempt retries, at about 1.24
// attempts per call) while only futile retries spend: a dead target gets at
// most 1 + Ratio + MinPerSecond/(calls per second) attempts per call, about
// 1.1. Tests pin both, and a rapid model checks the window on an injected
// clock.
//
// A refused retry ends the call with a *StopError (Reason "budget") that
// looks to status.Code like the last attempt's error, with a message that
// says the budget for the target is exhausted and a google.rpc.ErrorInfo
// detail (domain ErrorDomain, reason ReasonBudgetExhausted). The observer
// hears an observe.BudgetExhausted event. A refused hedge only stops further
// hedges. WithBudget changes the budget; WithoutBudget removes it.
//
// Before every attempt the layer writes chain.State.MayRetry: whether a
// failure of that attempt with a retryable code would be retried (attempts
// remain, the budget has a token now, the deadline leaves room). The
// circuit breaker reads it so as not to count failures a retry absorbs.
//
// # Attempts in metadata and context
//
// Retries and hedges carry their attempt number in the request metadata
// entry "failsoft-attempt" (AttemptMetadata): "2" for the second attempt,
// and so on. The first attempt carries none, so that a call that needs no
// retry pays nothing; servers read its absence as attempt 1. It is not a
// "grpc-" key, which gRPC reserves.
//
// Inner layers (per-attempt spans, metrics) and interceptors chained after
// this one read the attempt with observe.AttemptFrom(ctx): number, hedge,
// the wait before it and why, and the per-attempt timeout. Every attempt
// of a call that may be retried or hedged, or that has a timeout of its
// own, carries the value; observe.AttemptFrom reads its absence as the one
// attempt of a call that is not retried, {N: 1}.
//
// Observers that implement observe.Selector (the telemetry layer does) may
// say they have no use for attempt events; the interceptor then skips
// timing attempts.
//
// # Streams
//
// All three stream kinds are retried, while uncommitted: before any
// response header or message reached the caller. Until then the request
// messages sent are kept, copied as they were sent (the caller may reuse
// its message once SendMsg returns), in a replay buffer of at most 256 KiB
// by default
// (WithReplayBuffer); a new attempt replays them in order, and CloseSend if
// the caller closed. A failure to open the stream is retried the same way.
// The stream commits to its current attempt when RecvMsg returns a message,
// when Header returns the server's header, or when a message would overflow
// the buffer; after that nothing is retried, so the caller never sees a
// message twice or out of order. Once committed, every operation goes
// straight to the attempt. A stream that committed because its messages
// outgrew the buffer, and then fails with a retryable code, returns a
// *StopError (Reason "buffer") that says so.
//
// A per-attempt timeout bounds a stream's attempt only until it commits. A
// wait before a stream's retry holds the stream, so a concurrent SendMsg
// waits with it. When a send finds the attempt ended, the interceptor
// receives from it to learn its status; a response that arrived first is
// kept for the caller's next RecvMsg, which requires the proto codec. The
// attempt's context is released when the stream ends (RecvMsg returns an
// error) or when the caller's context is done, never when the interceptor
// returns.
//
// # Hedging
//
// A unary call to a method whose policy enables hedging (NO_SIDE_EFFECTS
// and hedge.max_attempts > 1) is hedged: after the hedge delay another
// attempt is sent without waiting for the first, while fewer than
// hedge.max_attempts attempts are in flight. The delay is fixed
// (hedge.delay), or, with hedge.latency_quantile, that quantile of the
// method's recent successful latencies (the last 256, recomputed every 32;
// the fixed delay until there are 32). An attempt that fails fast with a
// retryable code is retried per the retry policy: after its backoff, or
// after exactly the server's pushback; an invalid pushback stops further
// attempts; any other failure ends the call at once.
//
// Hedges and retries share one attempt limit: the larger of
// retry.max_attempts and hedge.max_attempts. A method with hedge
// max_attempts 2 and retry max_attempts 3 is sent at most twice at once and
// at most three times in all.
//
// The first success wins, the other attempts are cancelled and waited for.
// Each attempt decodes into a reply of its own; only the winner's is copied
// into the caller's reply (proto.Reset, then proto.Merge), and only its
// header, trailer and peer reach the caller's grpc.Header, grpc.Trailer and
// grpc.Peer options. Hedges spend the same budget as retries, and are not
// refunded. Streams are not hedged: they are retried.
//
// # Per-call options
//
// WithMax, Disable, WithAttemptTimeout and WithBackoff are grpc.CallOptions
// that change one call. None of them makes an unsafe method retryable; an
// invalid value fails the call with INVALID_ARGUMENT.
//
// # Events
//
// With WithObserver, the interceptor reports observe.AttemptStart and
// AttemptEnd for every attempt, Backoff before each wait (Reason "policy"
// or "pushback"), Hedge for each hedge, BudgetExhausted, and RetryStopped
// when it gives up on a failed call, with Reason "attempts", "code",
// "pushback", "deadline", "budget", "canceled" (the caller's context was
// cancelled), "rejected" (an inner layer's Rejection), "committed" (a
// stream failed after committing) or "buffer" (a stream outgrew its replay
// buffer). A nil observer costs nothing.
//
// # Where it sits in the chain
//
// Chain it after the layers that act once per logical call (the deadline
// layer, so that all attempts share the call's deadline; the idempotency
// key layer, so that every attempt carries the same key and this layer sees
// it) and before the layers that act on each attempt (circuit breaker,
// bulkhead, throttle, per-attempt telemetry), so that each attempt is
// admitted and observed on its own and a local rejection stops retrying.
// Chain the pushback interceptors inside the breaker and the throttle,
// after the bulkhead.
//
// # grpc-go's own retries
//
// grpc-go retries by itself in two ways. Service-config retries
// (retryPolicy, gRFC A6) would multiply attempts with this interceptor's:
// three attempts here times three there is nine. Turn them off with
// grpc.WithDisableRetry() (and no retryPolicy in the service config) when
// this interceptor is on. Transparent retries, which grpc-go makes when a
// request never left the client or was refused by the server before any
// processing, stay on: they cannot duplicate work, and this interceptor
// never sees them.
//
// # Cost
//
// A unary call whose first attempt succeeds costs, over a no-op invoker,
// its attempt's context: one deadline context when the call's deadline is
// not on the caller's context yet or the attempt has a timeout of its own,
// and, when the attempt has a timeout of its own, or is not the first,
// one allocation that carries its observe.Attempt and the trailer option
// pushback marking reads through. A retryable stream costs its wrapper and
// a copy of each message it may replay (and, used alone, the marking's
// wrapper of each attempt); hedged calls cost a goroutine and a reply per
// attempt. See the benchmarks.
package retry
