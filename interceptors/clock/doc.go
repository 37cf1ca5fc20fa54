// Package clock is the time source of the failsoft interceptors. Every
// decision that depends on time (backoff waits, breaker windows, budgets,
// throttling) reads it through Clock, so tests drive time with Fake instead
// of sleeping.
package clock
