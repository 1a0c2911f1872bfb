package lb_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine outlives the tests: every
// balancer is closed, every backend and front server shut down, and every
// transport's idle connections closed by the tests' cleanups, so whatever
// is left was leaked by the library.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
