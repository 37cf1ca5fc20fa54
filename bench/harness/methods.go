package harness

import policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"

// The loopback server serves failsoft.policytest.v1.TunedService.
const (
	benchService     = "failsoft.policytest.v1.TunedService"
	methodOverride   = policytestv1.TunedService_Override_FullMethodName
	methodHedged     = policytestv1.TunedService_Hedged_FullMethodName
	methodKeyedWrite = policytestv1.TunedService_KeyedWrite_FullMethodName
)
