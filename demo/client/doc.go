// Command client plays the checkout story against the demo payment
// server: load through healthy, flaky, outage and recovery phases, with
// live progress, then a report and a reconciliation against the server's
// ledger. It exits with status 1 when reconciliation fails (a duplicate or
// lost payment, or a payment still pending). While it runs it serves its
// metrics at /metrics on a loopback port, and it logs failsoft's
// decisions with their trace IDs to -log.
//
//	go run ./demo/client -server 127.0.0.1:PORT -admin 127.0.0.1:PORT -duration 60s
package main
