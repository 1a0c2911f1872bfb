package etcd_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a goroutine outlives the tests. Every test
// closes its clients and embedded servers in its cleanups, and Run waits
// for its own goroutine, so whatever is left was leaked.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
