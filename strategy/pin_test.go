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
