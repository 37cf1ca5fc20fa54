// Package policytestv1 holds the Go code generated from policytest.proto:
// test services that cover every combination of the standard
// idempotency_level and failsoft's options that the policy resolver must
// handle, and that the interceptors' tests and the benchmarks call. Every
// policy here is valid; the invalid ones are in package brokenv1, which
// only the tests that want them link.
//
// Everything else in this directory is generated: edit policytest.proto and
// run `make generate`.
package policytestv1
