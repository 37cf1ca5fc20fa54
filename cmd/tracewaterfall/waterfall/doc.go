// Package waterfall reads traces from Jaeger's HTTP query API and draws
// them in a terminal: one row per span, indented under its parent, as a bar
// on a shared time axis. Attempt spans show the backoff waited before them
// as a dotted lead-in, so a retried call reads as wait, try, wait, try.
// NewLayout gives the same rows, labels and times to other drawings.
package waterfall
