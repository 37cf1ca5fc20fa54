package harness

import policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"

// The loopback server serves failsoft.policytest.v1.TunedService, whose
// methods the cost table calls with the bench's settings, and PlainService,
// whose methods have no failsoft options: the failure modes call them, so
// that failsoft meets them with its library defaults.
const (
	benchService     = "failsoft.policytest.v1.TunedService"
	plainServiceName = "failsoft.policytest.v1.PlainService"
	// methodCharge is a write that the README's Charge policy
	// (requires_idempotency_key only) covers, given in code.
	methodCharge     = policytestv1.PlainService_Plain_FullMethodName
	methodOverride   = policytestv1.TunedService_Override_FullMethodName
	methodHedged     = policytestv1.TunedService_Hedged_FullMethodName
	methodKeyedWrite = policytestv1.TunedService_KeyedWrite_FullMethodName
)

// isCharge reports whether method charges the ledger.
func isCharge(method string) bool { return method == methodKeyedWrite || method == methodCharge }
