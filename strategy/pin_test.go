package strategy

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb/internal/pinned"
)

// A request pinned to a least-connections member counts in flight like a
// pick, so that the next picks avoid it, and its Done uncounts it.
func TestLeastConnPin(t *testing.T) {
	all := endpoints(1, 1)
	p := NewLeastConn().Picker(newSet(all, nil))
	require.True(t, pinned.Pin(p, 0))
	require.True(t, pinned.Pin(p, 0))
	assert.Equal(t, []int{2, 0}, lcConns(p))
	assert.Equal(t, 1, p.Pick(nil, nil), "least connections picked the member with two pinned requests")
	assert.Equal(t, 1, p.Pick(nil, nil))
	assert.Equal(t, []int{2, 2}, lcConns(p))
	obs := p.(Observer)
	obs.Done(0, Success)
	obs.Done(0, Failure)
	assert.Equal(t, []int{0, 2}, lcConns(p))
	assert.False(t, pinned.Pin(p, 2), "a position out of the Set was pinned")
	assert.False(t, pinned.Pin(p, -1))
	assert.Equal(t, []int{0, 2}, lcConns(p))
}

// A request pinned to a smooth weighted member leaves the rotation as it
// was; its failure lowers the member's effective weight like a pick's.
func TestSmoothWeightedPin(t *testing.T) {
	all := endpoints(5, 1, 1)
	set := newSet(all, nil)
	set.MaxFails = 1
	p := NewSmoothWeighted().Picker(set)
	require.True(t, pinned.Pin(p, 2))
	require.True(t, pinned.Pin(p, 1))
	assert.Equal(t, "a a b a c a a", pickNames(t, p, all, 7), "pins moved the rotation")
	assert.False(t, pinned.Pin(p, 3))
	p.(Observer).Done(0, Failure)
	ew, _ := p.(interface{ EffectiveWeight(int) (int, bool) }).EffectiveWeight(0)
	assert.Equal(t, 0, ew, "a pinned request's failure did not lower the effective weight")
}

// Pickers that keep no per-pick state take no pins: the balancer calls no
// Done for requests it sends them without a Pick.
func TestPinUnsupported(t *testing.T) {
	all := endpoints(1, 1)
	assert.False(t, pinned.Pin(NewRoundRobin().Picker(newSet(all, nil)), 0))
	assert.False(t, pinned.Pin(NewConsistentHash(nil).Picker(newSet(all, nil)), 0))
}

// The strategies of power of two choices and bounded hashing count a
// pinned request in flight like a pick, so that their next picks see it,
// and its Done takes it back.
func TestCountingStrategiesPin(t *testing.T) {
	all := endpoints(1, 1)
	tests := []struct {
		name   string
		s      Strategy
		counts func(Picker) []int
	}{
		{"LeastRequest", newLR(t, LeastRequestConfig{Rand: seeded(1)}), lrActive},
		{"PeakEWMA", newPE(t, PeakEWMAConfig{Rand: seeded(2), Now: func() int64 { return 1e9 }}), pePending},
		{"BoundedHash", NewBoundedHash(headerKey, 1.25), bhLoads},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.s.Picker(newSet(all, nil))
			require.True(t, pinned.Pin(p, 0))
			require.True(t, pinned.Pin(p, 0))
			assert.Equal(t, []int{2, 0}, tt.counts(p))
			if tt.name != "BoundedHash" {
				// Two draws over two members: the idle one wins unless
				// both draws fall on the busy one.
				idle := 0
				for range 20 {
					i := p.Pick(nil, nil)
					if i == 1 {
						idle++
					}
					p.(Observer).Done(i, Success)
				}
				assert.GreaterOrEqual(t, idle, 10, "the member with two pinned requests was preferred")
			}
			if lo, ok := p.(LatencyObserver); ok {
				lo.DoneAfter(0, Success, 0)
			} else {
				p.(Observer).Done(0, Success)
			}
			p.(Observer).Done(0, Failure)
			assert.Equal(t, []int{0, 0}, tt.counts(p))
			assert.False(t, pinned.Pin(p, 2), "a position out of the Set was pinned")
			assert.False(t, pinned.Pin(p, -1))
		})
	}
}
