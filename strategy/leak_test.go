package strategy

import (
	"testing"

	"go.uber.org/goleak"
)

// Strategies start no goroutine; the check keeps it that way.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
