// Package chain folds failsoft's client layers into one gRPC interceptor,
// and is the one place that says what a call carries between them.
//
// # A call's journey
//
// failsoft.DialOptions installs one unary and one stream interceptor. A
// unary call enters the suite's interceptor, which marks its options (Mark:
// a second suite on the connection is refused) and starts the layers,
// outermost first: call telemetry, deadline (computes the call's deadline
// into State.Deadline), idempotency key, fallback, retry (one attempt after
// another: each gets a context with the call's deadline, its own timeout
// when a retry could follow it, and State.MayRetry), throttle, breaker,
// bulkhead, attempt telemetry. The chain's end sets State.Deadline on the
// context if no layer did, runs pushback marking (Unaries.Inside) and then
// grpc-go's invoker, which sends the attempt on the wire. Streams take the
// same path, with the deadline on the stream's context from the start.
//
// Each layer gets its successor as a Next value, passed by value and never
// allocated: grpc-go's own chaining would allocate a closure per layer on
// every call. Each layer package implements its layer once, in this form;
// its public interceptor runs it alone with UnaryInterceptor or
// StreamInterceptor, and it behaves the same there as inside the suite.
//
// # What a call carries: State
//
// State is copied into every layer; a layer's writes reach only the layers
// inside it. Each field has one writer:
//
//   - Resolver, Policy: written by State.Resolve, the first time a layer
//     resolves the method's policy; every later layer with the same resolver
//     reads it from there.
//   - Deadline: written by the deadline layer only: the call's deadline.
//     It is never cleared. Whoever makes a context for the call below it
//     (the retry layer's attempts, or the chain's end) puts it on that
//     context, so grpc-go always sees it; layers read it with DeadlineOf.
//   - MayRetry: written by the retry layer only, before each attempt: a
//     failure of this attempt with a retryable code would be retried
//     (false when no retry layer runs). The breaker reads it to count
//     logical calls, not attempts.
//
// The attempt itself (number, hedge, backoff, per-attempt timeout) travels
// on the context as an observe.Attempt, so that user interceptors after the
// suite see it too; a first attempt without a timeout of its own carries
// none, which observe.AttemptFrom reads as that attempt.
package chain
