// Package registry keeps the per-target state of the interceptors that
// hold one (a breaker, a bulkhead compartment): created on first use,
// found without locks on the call path, bounded in number.
package registry
