// Package outcome is the shared vocabulary for what a call's result means
// to the failsoft interceptors: whether it counts against the target
// (Failure), says the target is overloaded (Overload), was caused by the
// caller (Ignored), or succeeded. It also defines Rejection, the error every
// interceptor returns when it answers a call locally without sending it.
//
// One classification serves every layer, so the breaker, the retry budget
// and the overload throttle agree on what a status code means.
package outcome
