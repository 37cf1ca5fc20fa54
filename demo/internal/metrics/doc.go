// Package metrics gives the demo programs an OpenTelemetry meter provider
// whose metrics are served in the Prometheus text format, for a Prometheus
// to scrape and for failsoft's alert rules (package alerts) to read. The
// server serves them on its admin address, the checkout client with Serve
// on a loopback address of its own.
package metrics
