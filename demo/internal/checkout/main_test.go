package checkout

import (
	"testing"

	"go.uber.org/goleak"
)

// The client's Confirm starts a goroutine per stream; none may outlive a
// test.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
