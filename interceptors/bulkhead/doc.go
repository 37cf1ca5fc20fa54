// Package bulkhead limits how many calls a client has in flight to each
// target (the ClientConn's target), or to each target and method with
// PerMethod, so that one slow dependency cannot take every goroutine: when
// notifications are saturated, payments keep working.
//
// A call takes a slot for as long as it runs; a stream holds its slot
// until it ends (RecvMsg returns an error, or its single response arrived)
// or its context is done. When a compartment is full, a call waits up to
// MaxWait (default: not at all) for a slot and is then rejected, without
// being sent, with an *outcome.Rejection (Layer "bulkhead", code
// RESOURCE_EXHAUSTED) whose message names the target and the limit. If the
// call's context ends while it waits, it fails with the context's status.
//
// Defaults: Limit 100 calls per target, no wait, about 1024 compartments
// kept (WithMaxTargets): past that, an idle compartment not used lately
// makes room for a new one, and one with calls in flight is never dropped.
//
// # Where it sits in the chain
//
// Innermost of the resilience layers, inside the breaker: each attempt
// takes a slot, a rejection is a local answer that the breaker ignores and
// that fallbacks can act on. Rejections are reported to the observer as
// observe.BulkheadRejected events.
//
// # Cost
//
// One map lookup and one non-blocking channel send and receive per call;
// no allocation for unary calls.
package bulkhead
