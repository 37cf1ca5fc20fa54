// Package tracing sets up the OpenTelemetry SDK for the demo's programs:
// spans always get trace IDs (the client logs every failure with one), and
// are exported over OTLP gRPC when an endpoint is given, for example to a
// local Jaeger.
package tracing
