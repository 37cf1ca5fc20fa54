// Package fallback answers calls that failed, or that a failsoft layer
// refused to send, from a per-method chain of plan B, C and D, so that the
// caller gets a degraded answer instead of an error when a dependency is
// down.
//
// # The chain
//
// For each method (a full method name, or "/pkg.Service/*" for a whole
// service) the levels are tried in this order, each skipped if not set:
//
//  1. a user function (WithFunc, or Typed over the method's own types);
//  2. the last good response for the same request (WithCache), for
//     NO_SIDE_EFFECTS methods only: successful responses are kept keyed by
//     method and deterministically marshalled request, at most 1000
//     entries no older than 5 minutes by default (CacheLimits);
//  3. a static default (WithStatic);
//
// and otherwise the call returns its original error.
//
// By default the chain is tried when the call was rejected locally (an
// open breaker, a full bulkhead, a throttle, an exhausted budget: any
// *outcome.Rejection), or failed with a status that outcome.Default calls
// Failure or Overload, unless the caller cancelled it; outcomes the caller
// caused (NOT_FOUND, INVALID_ARGUMENT, ...) are returned as they are. When
// changes this.
//
// # Degraded answers are marked
//
// A call answered by the chain returns nil, with:
//   - the response header entry "failsoft-fallback" (MetadataKey) set to
//     the level's name, through the grpc.Header call option the caller
//     passed, if any (read it with FromHeader);
//   - the level stored through the Report call option, if passed;
//   - an observe.Fallback event whose Reason is the level's name.
//
// # Where it sits in the chain
//
// Outermost of the resilience layers, outside retry and the breaker: it
// sees the error that remains once retries are exhausted or the breaker
// refused the call. Streams pass through unchanged; only unary calls are
// answered.
//
// # Cost
//
// Methods without a chain cost one map lookup. Methods with a cache pay
// for marshalling the request and the response on every success.
package fallback
