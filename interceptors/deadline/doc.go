// Package deadline makes sure no gRPC call runs without a deadline, that a
// call with too little time left is not sent at all, and that a service
// calling other services leaves itself time to answer its own caller.
//
// # Client: every call gets a deadline
//
// The unary and stream client interceptors give each call the earliest of:
//
//   - the caller's deadline, if its context has one;
//   - the method policy's timeout (failsoft.v1.MethodPolicy.timeout, from
//     the proto or from code, see package policy), counted from now.
//
// When neither exists, the call gets the suite default, DefaultTimeout
// (10 s), changed with WithDefaultTimeout. An existing deadline is never
// extended: a policy timeout only ever shortens it. When the caller's
// deadline is already the earliest the context is passed on untouched and
// the interceptor does not allocate; otherwise it adds the deadline with
// context.WithDeadline and allocates nothing beyond what that costs.
// Within the failsoft suite, which has a retry layer inside this one, a
// unary call's deadline is handed to that layer instead, which sets it on
// each attempt's context together with the attempt's own timeout, so that
// one context serves both.
//
// A stream's deadline covers its whole life. Its context is released when
// the stream ends (RecvMsg returns an error, io.EOF included, or the one
// response of a client-streaming call; or the stream's context is done),
// never when the interceptor returns, and without a goroutine per stream.
//
// # Fail fast
//
// When the budget left before the deadline is below the method's minimum,
// the call is not sent: it fails at once with DEADLINE_EXCEEDED, as an
// *outcome.Rejection with Layer "deadline" whose message says how much was
// left and what the minimum is, and which matches
// errors.Is(err, context.DeadlineExceeded). The minimum is the policy's
// min_budget (zero switches the check off for that method), or, for
// methods that set none, WithMinBudget (DefaultMinBudget, 0: only calls
// whose deadline has already passed fail fast). A sent call lets the server start work it cannot finish; a call
// failed here costs nothing and tells the caller at once.
//
// For methods whose policy sets no min_budget, the unary client
// interceptor also learns a floor: the fastest the method's calls
// succeeded lately (over the last 10 to 20 s, once 3 have succeeded). A
// call whose budget is below it, such as a caller's nearly spent budget
// passed on, fails fast the same way, its message naming the floor. Sent,
// it could only end in DEADLINE_EXCEEDED, which the breaker, the throttle
// and outlier ejection count against a target that is healthy, and enough
// of them would make those layers shed the calls of callers whose budgets
// the target meets. WithLearnedFloor(false) switches it off; a method
// policy's min_budget (zero included) exempts its method, for example one
// whose fallback chain should answer such calls (a fallback layer inside
// this one never sees a call failed fast).
//
// # Telemetry
//
// With WithObserver, every sent call reports an observe.DeadlineSet event
// whose Duration is the budget remaining at send time and whose Reason is
// where the deadline came from ("caller", "policy" or "default"); every
// call failed fast reports observe.DeadlineFailFast with what was left and
// the Rejection as Err.
//
// # Across hops: the server interceptors
//
// gRPC already carries deadlines between services: a client sends the time
// left before its context's deadline in the grpc-timeout request header,
// and the server gives the handler's context a deadline that far from when
// the header arrived. A handler that calls another service with its own
// context therefore passes the deadline on. But it passes on the same
// deadline (later, even, by the time the request spent in transit, since
// the header is relative), so the downstream service, the handler and the
// original caller all give up at the same instant: the handler has no time
// left to answer, and the caller sees only its own local
// DEADLINE_EXCEEDED, never the handler's error or fallback.
//
// The server interceptors add a safety margin, WithSafetyMargin
// (DefaultSafetyMargin, 20 ms): a handler whose incoming call has a
// deadline runs with a context whose deadline is that much earlier
// (context.WithDeadline on the handler's context). Every call the handler
// makes with that context sends the shorter grpc-timeout, so the
// downstream service gives up first and the handler still has the margin
// to answer its caller. Choose a margin above the return trip's latency.
// Calls without an incoming deadline are left alone; the client
// interceptors then give the outgoing calls their policy or default
// deadline.
//
// # Where it sits in the chain
//
// The client interceptors go first (outermost) in grpc.WithChainUnaryInterceptor
// and grpc.WithChainStreamInterceptor, so that one deadline covers every
// retry, backoff and hedge inside it, and a call without budget is failed
// before a breaker, bulkhead or throttle counts it or lets it take a slot.
// Only a fallback layer, which answers locally, belongs outside it. The
// server interceptors go on the server of a service that calls others,
// early in its chain, so that the handler and every outgoing call see the
// shortened deadline.
package deadline
