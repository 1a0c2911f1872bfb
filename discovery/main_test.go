package discovery_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine outlives the tests: every
// watcher, source, balancer, DNS server and HTTP server is stopped by the
// tests' cleanups, so whatever is left was leaked by the package.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
