// Package payserver is the demo payment server: PaymentService over a
// durable ledger, with chaos injection in front, the gRPC health service,
// an admin HTTP endpoint for the chaos settings, and graceful shutdown.
package payserver
