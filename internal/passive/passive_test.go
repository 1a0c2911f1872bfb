package passive

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestThreshold(t *testing.T) {
	for maxFails, want := range map[int]int{-5: 0, -1: 0, 0: DefaultMaxFails, 1: 1, 3: 3, 1000: 1000} {
		assert.Equal(t, want, Threshold(maxFails), "Threshold(%d)", maxFails)
	}
	assert.Equal(t, 1, DefaultMaxFails, "nginx's max_fails default")
}
