// Package chaos is the demo's scenario scripting over the library's
// [github.com/failsoft/failsoft/interceptors/chaos]: a phase's faults
// ([Config]) become rules for the payment service, where reads never lose
// a response (only a write's lost response is the case idempotency keys
// exist for); flags set the server's first phase; and the client switches
// phases through the server's control endpoint.
package chaos
