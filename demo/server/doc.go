// Command server runs the demo payment service: a gRPC PaymentService on
// 127.0.0.1 over a ledger file that survives restarts, with injectable
// chaos, the gRPC health service and graceful shutdown.
//
//	go run ./demo/server -error-rate 0.1 -lost-rate 0.05
//
// The chaos settings can be changed while it runs:
//
//	curl -s localhost:PORT/chaos                                  # settings and fault counters
//	curl -s -d '{"down":true}' localhost:PORT/chaos               # outage
//	curl -s -d '{"reset":true,"latency":"20ms"}' localhost:PORT/chaos
package main
