// Package paymentsv1 holds the Go code generated from payments.proto: the
// demo payment service that `make demo` runs. Every stream kind is there,
// and every method says in its options what the failsoft interceptors may
// do with it: charges have side effects and are retried only with an
// idempotency key; reads have none and may be retried and hedged.
//
// Everything else in this directory is generated: edit payments.proto and
// run `make generate`.
package paymentsv1
