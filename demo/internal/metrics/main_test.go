package metrics_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Serve starts a goroutine per endpoint; none may outlive a test.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
