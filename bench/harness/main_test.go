package harness

import (
	"testing"

	"go.uber.org/goleak"
)

// The scenarios start servers, clients and a goroutine per call: each
// must be gone when its scenario returns.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
