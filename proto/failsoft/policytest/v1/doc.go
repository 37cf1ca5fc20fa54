// Package policytestv1 holds the Go code generated from policytest.proto:
// test services that cover every combination of the standard
// idempotency_level and failsoft's options that the policy resolver must
// handle, and that the interceptors' tests and the benchmarks call.
//
// Everything else in this directory is generated: edit policytest.proto and
// run `make generate`.
package policytestv1
