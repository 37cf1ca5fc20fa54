// Package chaos injects faults into the demo payment server: errors with
// chosen status codes, latency with a slow tail, outage windows, responses
// lost after the work was committed, and overload pushback. Its settings are
// validated (a bad one is refused with a message naming it), can be changed
// while the server runs through an HTTP endpoint, and every injected fault
// is counted.
//
// The interceptors sit outermost on the server, so a fault looks to the
// client exactly like the network or the server failing: an injected error
// or outage never reaches the handler, and a lost response is dropped after
// the handler (and any idempotency layer) recorded its result.
package chaos
