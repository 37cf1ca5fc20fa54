// Package e2e holds failsoft's end-to-end tests against real external
// systems (Jaeger). It is a module of its own so that their dependencies
// (OTLP exporters) stay out of the library's go.mod. Run from this
// directory: go test ./... (the Jaeger test builds Jaeger on first use;
// see jaeger_test.go).
package e2e
