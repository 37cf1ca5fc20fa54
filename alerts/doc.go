// Package alerts ships Prometheus rules for failsoft's metrics, as the
// OpenTelemetry Prometheus exporter names them: the error budget that
// callers see (more than 0.1% of calls failed in 5 minutes, and the
// multi-window burn rates of a 99.9% objective), a circuit breaker open for
// more than 2 minutes, retries above one in ten calls and more than 1.5
// attempts per call for 5 minutes, and any idempotency store error.
//
// The error budget counts failsoft.client.calls, which the telemetry layer
// records once per call with the status its caller saw, after retries and
// fallbacks: failures that retries absorbed cost no budget, and show up in
// the retry alerts instead. Load the rules into Prometheus as they are
// (failsoft.rules.yml in this directory, or Rules from Go); every rule is
// unit tested with promtool in failsoft.rules_test.yml.
package alerts
