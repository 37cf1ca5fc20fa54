// Package registry keeps the per-target state of the interceptors that
// hold one (a breaker, a throttle's counts, a bulkhead compartment):
// created on first use, found without locks on the call path, and about
// bounded in number. When the bound is reached, a value not used lately
// and worth little makes room; a value whose loss callers would see (an
// open breaker, a compartment with calls in flight) is never dropped, and
// a new target is never left without a value.
//
// A Table holds the values in one map, by a key of its user's choosing;
// a Registry is a Table keyed by target and, when its user keeps values
// per method, method.
package registry
