package sim

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine outlives the tests: the
// simulation runs on simulated time in the calling goroutine and starts
// none, and the check keeps it that way.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
