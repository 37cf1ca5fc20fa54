// Command tracewaterfall draws a trace from Jaeger as a waterfall in the
// terminal: spans as bars on a time axis, attempts with the backoff waited
// before them, span events listed under their span. It needs only Jaeger's
// HTTP query API, so it works with a Jaeger built without its web UI.
//
// Usage:
//
//	tracewaterfall [flags] TRACE_ID...        fetch and draw traces by ID
//	tracewaterfall -service NAME [-limit N]   draw a service's recent traces
//	tracewaterfall -file trace.json           draw a saved API response ("-" reads stdin)
//
// Flags:
//
//	-jaeger URL   Jaeger query API (default $JAEGER_QUERY_URL or http://127.0.0.1:16686)
//	-width N      columns of the time axis (default 60)
//	-ascii        draw with ASCII characters only
//	-no-events    leave out span events
package main
