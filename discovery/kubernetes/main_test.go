package kubernetes_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine outlives the tests: every Run is
// stopped by its test's cleanup, and Run returns only after the informer's
// goroutines (reflector, processor, listeners) have ended.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
