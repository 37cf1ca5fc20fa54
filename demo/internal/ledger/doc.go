// Package ledger is the demo payment service's durable ledger: payments in
// an embedded bbolt file that survives restarts. Every payment records the
// idempotency key it was charged with, so that the demo can reconcile the
// client's view against what really happened.
package ledger
