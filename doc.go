// Package failsoft installs the failsoft resilience suite on a gRPC client
// connection in one call:
//
//	dialOpts, err := failsoft.DialOptions()
//	if err != nil {
//		return err // a misconfigured layer, named in the error
//	}
//	conn, err := grpc.NewClient(target, append(dialOpts,
//		grpc.WithTransportCredentials(creds))...)
//
// Every layer reads what it may do with a method from the method's proto
// options (see package policy): a method is retried only when its proto
// says it is safe, hedged only when it has no side effects.
//
// # The chain, outermost first, and why
//
//  1. telemetry call span: one span per logical call, over every attempt,
//     so a retried call stays one trace and local rejections are traced.
//  2. deadline: every call gets its deadline before anything waits, so one
//     deadline bounds all retries, backoffs and hedges; a call with too
//     little budget fails before any other layer counts it.
//  3. idempotency key: attached once per logical call, so every retry and
//     hedge carries the same key and the server charges once. Calls to
//     methods that require no key skip this layer.
//  4. fallback: acts on the final outcome (retries exhausted, breaker
//     open); outside retry so a fallback answer is never retried.
//  5. retry and hedging, with the per-target budget: each attempt runs
//     through the layers below, so each attempt is throttled, counted by
//     the breaker, limited by the bulkhead and traced on its own.
//  6. adaptive throttle: per attempt, so retries into an overloaded target
//     are shed locally too.
//  7. circuit breaker: per attempt; an open breaker answers at once and the
//     retry layer does not retry that answer against the same target.
//  8. bulkhead: limits the attempts in flight to a target; inside the
//     breaker so rejected calls never take a slot.
//  9. telemetry attempt span: covers exactly one attempt on the wire and
//     carries the trace context to the server.
//  10. pushback marking: innermost; an attempt answered with server
//     pushback (a grpc-retry-pushback-ms trailer, a google.rpc.RetryInfo)
//     is marked as overload, so that every layer above, which sees only the
//     error, treats a live server shedding load as overloaded, not broken:
//     it never opens the breaker.
//
// # One interceptor, one context per attempt
//
// The layers are installed as one unary and one stream interceptor that
// run them in that order. grpc-go's own chaining would wrap each layer's
// successor in a new closure on every call; here a layer hands the call on
// by value, so running the layers allocates nothing. What the layers tell
// each other about a call (its policy, its deadline, whether a failed
// attempt would be retried) is written down in internal/chain, each item
// with one writer.
//
// The deadline layer does not put the deadline it adds to a unary call on
// the call's context: the retry layer sets it on each attempt's context
// together with the attempt's own timeout, whichever is earlier, and the
// chain's end sets it when no retry layer runs. A call whose first attempt
// succeeds then costs one deadline context, not one for the call and one
// for the attempt. Everything below the retry layer, your interceptors
// included, sees the deadline on the context as usual, and the attempt
// (number, backoff, per-attempt timeout) with observe.AttemptFrom.
//
// Each layer can be configured (WithDeadline, WithThrottle, ...) or
// switched off (WithoutDeadline, WithoutThrottle, ...). The resolver,
// observer and clock given with WithResolver, WithObserver and WithClock
// are shared by every layer.
//
// # With your own interceptors and stats handlers
//
// grpc-go runs chained interceptors in the order their dial options were
// given. Put authentication and logging interceptors before the suite's
// dial options if they should see one logical call, after them if they
// should see every attempt (auth tokens that expire between attempts
// belong after). A stats handler such as otelgrpc's sees every attempt,
// as it does without failsoft; use the suite's telemetry layer for the
// call span over all attempts.
//
// # What DialOptions turns off, and on
//
// grpc-go's service-config retries (grpc.WithDisableRetry): with both on,
// attempts would multiply. gRPC's transparent retries of calls that never
// reached the server stay on.
//
// Round-robin load balancing (DefaultLoadBalancing), given as the default
// service config: grpc-go's own default, pick_first, sends every attempt
// of a call to the same backend, so a retry could never escape a bad host.
// With round_robin a retry goes to the next backend; against one broken
// backend of three, with round_robin alone, every call succeeds at 1.5
// attempts per call. WithLoadBalancing sets another policy, or "" for grpc-go's
// default; a service config from the name resolver wins over both.
//
// Outlier ejection (package outlier, the "failsoft_outlier" policy) runs
// around that policy: a backend that fails five calls in a row, half of
// its calls in a second, or whose median latency is three times its
// siblings' is taken out of rotation for 10 s times its ejection count and
// then probed back in, never more than half of the backends at once.
// Against one broken backend of three it costs about five failed attempts
// instead of a failed first attempt in three (1.02 attempts per call
// rather than 1.5), and a backend 50 ms slower than its siblings stops
// getting calls after a second. WithoutOutlierEjection leaves it out;
// WithLoadBalancing(`[{"failsoft_outlier":{...}}]`) configures it.
//
// grpc-go's own outlier detection (gRFC A50) is not used: grpc-go
// registers its balancer ("outlier_detection_experimental") only from the
// google.golang.org/grpc/xds package, which would link the xDS client and
// Envoy's API protos into every program that uses failsoft, and it has no
// latency rule. Programs that already import that package can still ask
// for it with WithLoadBalancing, and WithoutOutlierEjection.
//
// # Misconfiguration
//
// Invalid values and a layer configured twice are refused by DialOptions
// with an error naming the option. So are invalid method policies: proto
// options such as `max_attempts: 100`, `timeout: {}` or a misspelt
// retryable code pass buf lint, so DialOptions and ServerOptions resolve
// the policy of every method in the resolver's registry (every service
// linked into the binary, with the default resolver) and refuse invalid
// ones, naming each method and field. Programs that register descriptors
// later pass WithLatePolicies (WithServerLatePolicies): a call to a method
// whose policy is invalid then fails with FAILED_PRECONDITION before
// anything is sent. A policy given in code (policy.WithService,
// policy.WithMethod) whose service is registered but lacks the named
// method or service is refused by policy.New; one whose service is not
// registered at all is reported to the observer as observe.PolicyUnmatched
// (logged as a warning by package logging), since a policy in code also
// serves services whose descriptors are not linked. Two suites on one connection (or the
// same options passed twice) are found on the first call, which fails with
// FAILED_PRECONDITION before anything is sent, since grpc-go offers no way
// to inspect other dial options when the client is built. The suite finds
// them by a call option it adds to the calls it passes on, so an
// interceptor installed after the suite that makes a new call on the same
// connection must not pass on the options it was given.
package failsoft
