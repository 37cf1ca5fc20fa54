// Command server runs the demo payment service: a gRPC PaymentService on
// 127.0.0.1 over a ledger file that survives restarts, with faults
// injected by failsoft's chaos package, the gRPC health service and
// graceful shutdown.
//
//	go run ./demo/server -error-rate 0.1 -lost-rate 0.05
//
// The flags set the faults of the payment service (its reads never lose a
// response). The rules can be replaced while it runs, from loopback, or
// from anywhere with the secret in FAILSOFT_CHAOS_SECRET sent as a bearer
// token:
//
//	curl -s localhost:PORT/chaos      # rules, seed and fault counters
//	curl -s -d '{"enabled":true,"rules":[{"match":"/payments.v1.PaymentService/*","down":true}]}' localhost:PORT/chaos
//	curl -s -d '{"enabled":false}' localhost:PORT/chaos
package main
