package bench

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine outlives the tests and
// benchmarks: every balancer is closed and every server, listener and
// transport they start is shut down, so whatever is left was leaked.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
