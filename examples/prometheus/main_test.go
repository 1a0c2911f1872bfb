package main

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine outlives the tests: every
// balancer is closed and every test server shut down by the tests'
// cleanups, so whatever is left was leaked.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
