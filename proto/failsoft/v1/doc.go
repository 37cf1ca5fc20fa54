// Package failsoftv1 holds the Go code generated from options.proto: the
// method option (failsoft.v1.method) and service option
// (failsoft.v1.service_default) that tell the failsoft interceptors a
// method's timeout, whether and how it is retried or hedged, whether it
// needs an idempotency key, and whether the circuit breaker applies. The
// standard `option idempotency_level` is read first; these add what it
// cannot say. The policy package resolves them; see its documentation for
// the order in which method, service and suite defaults apply.
//
// Everything else in this directory is generated: edit options.proto and
// run `make generate`.
package failsoftv1
