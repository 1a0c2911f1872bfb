package health

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the tests if any goroutine is left running after them:
// checks own no goroutines and leave no idle connections behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
