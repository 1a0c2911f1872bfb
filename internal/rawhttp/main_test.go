package rawhttp_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine outlives the tests: every
// connection Do and Send open is closed before they return.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
