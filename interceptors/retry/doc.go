// Package retry retries and hedges gRPC client calls whose method policy
// says they are safe to repeat.
package retry
