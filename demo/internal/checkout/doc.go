// Package checkout is the demo's checkout client: it charges customers
// through the failsoft interceptor chain, answers "payment pending, we'll
// confirm by email" when the payment service cannot confirm a charge, and
// leaves such charges to failsoft's pending queue (package
// interceptors/pending, on a bbolt file), which sends them again with the
// same idempotency key once the service is back. It drives load through
// phases, samples its own state once a second, reconciles what it believes
// against the service's ledger, and reports in text and as one
// self-contained HTML page (inline CSS and SVG charts of the samples).
package checkout
