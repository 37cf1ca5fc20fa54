// Command gameday plays the demo's four phases (healthy with a slow tail,
// flaky, outage, recovery) against any service that serves failsoft's
// chaos control endpoint, so that a team can watch its own clients,
// breakers, fallbacks, dashboards and alerts go through the same story as
// the demo:
//
//	FAILSOFT_CHAOS_SECRET=... go run ./demo/gameday \
//		-control https://orders.staging:9090/chaos -match '/orders.v1.Orders/*' -duration 10m
//
// Each phase replaces the endpoint's rules with one rule for -match; the
// last step, and an interrupt, switch injection off. -dry-run prints the
// rules without sending them. The secret, when the endpoint needs one, is
// read from FAILSOFT_CHAOS_SECRET, never from the command line.
package main
