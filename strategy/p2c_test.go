package strategy

import (
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// at is the Rand value that makes a draw over a total weight of total land
// on x: x·⌈2⁶⁴/total⌉, which the multiply-shift (r·total)>>64 maps back to x.
func at(x, total uint64) uint64 { return x * (math.MaxUint64/total + 1) }

// scripted returns a Rand that yields vals in turn, cycling.
func scripted(vals ...uint64) func() uint64 {
	k := 0
	return func() uint64 {
		v := vals[k%len(vals)]
		k++
		return v
	}
}

// draw returns a Rand yielding the draws ks among n equally weighted
// members.
func draw(n int, ks ...int) func() uint64 {
	vals := make([]uint64, len(ks))
	for j, k := range ks {
		vals[j] = at(uint64(k), uint64(n))
	}
	return scripted(vals...)
}

// seeded returns a deterministic Rand.
func seeded(seed uint64) func() uint64 {
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)).Uint64
}

// clock is a manual time source for PeakEWMA, in nanoseconds.
type clock struct{ ns int64 }

func (c *clock) now() int64              { return c.ns }
func (c *clock) set(d time.Duration)     { c.ns = int64(d) }
func (c *clock) advance(d time.Duration) { c.ns += int64(d) }

// newLR returns a LeastRequest over cfg, failing t on error.
func newLR(t testing.TB, cfg LeastRequestConfig) *LeastRequest {
	t.Helper()
	lr, err := NewLeastRequest(cfg)
	require.NoError(t, err)
	return lr
}

// newPE returns a PeakEWMA over cfg, failing t on error.
func newPE(t testing.TB, cfg PeakEWMAConfig) *PeakEWMA {
	t.Helper()
	pe, err := NewPeakEWMA(cfg)
	require.NoError(t, err)
	return pe
}

// lrActive returns the in-flight counts of All as p sees them.
func lrActive(p Picker) []int {
	lp := p.(*lrPicker)
	c := make([]int, len(lp.st))
	for i, st := range lp.st {
		c[i] = int(st.active.Load())
	}
	return c
}

// pePending returns the pending counts of All as p sees them.
func pePending(p Picker) []int {
	ep := p.(*ewmaPicker)
	c := make([]int, len(ep.st))
	for i, st := range ep.st {
		c[i] = int(st.pending.Load())
	}
	return c
}

func TestP2CDrawsEqualWeights(t *testing.T) {
	set := newSet(hostEndpoints(4), nil)
	d := newDraws(set, nil)
	require.Nil(t, d.cols, "equal weights need no table")
	for k := range 4 {
		d.rnd = scripted(at(uint64(k), 4))
		assert.Equal(t, k, d.next(), "draw %d", k)
	}
	d.rnd = scripted(math.MaxUint64, 0)
	assert.Equal(t, 3, d.next())
	assert.Equal(t, 0, d.next())
}

// col is the Rand value that draws column k of n and keeps it: its coin,
// the low 32 bits, is 0. Every member keeps some of its own column.
func col(k, n int) uint64 { return (at(uint64(k), uint64(n)) | (1<<32 - 1)) + 1 }

// The alias table is exact: summed over the columns, each member's chance
// is its weight over the total, to 2⁻³² per column; and every member keeps
// part of its own column, so col draws it.
func TestP2CDrawsWeighted(t *testing.T) {
	for _, weights := range [][]int{{1, 2, 3, 4}, {1, 1, 1, 1, 60}, {7, 1}, {3, 3, 1, 1, 3, 3, 5, 9, 2, 1, 1}} {
		set := newSet(endpoints(weights...), nil)
		d := newDraws(set, nil)
		require.Len(t, d.cols, len(weights))
		n := float64(len(weights))
		total := 0
		for _, w := range weights {
			total += w
		}
		chance := make([]float64, len(weights))
		for k, c := range d.cols {
			keep := float64(c.keep) / (1 << 32)
			chance[k] += keep / n
			chance[c.other] += (1 - keep) / n
			require.Positive(t, c.keep, "%v: column %d", weights, k)
			d.rnd = scripted(col(k, len(weights)))
			assert.Equal(t, k, d.next(), "%v: col(%d)", weights, k)
		}
		for k, w := range weights {
			assert.InDelta(t, float64(w)/float64(total), chance[k], 1e-9, "%v: member %d", weights, k)
		}
	}
}

// Draws over usable members only, weighted by Set.Weights (a slow-starting
// member has less): shares within 2% of the weights over 100,000 seeded
// draws.
func TestP2CDrawsFollowWeights(t *testing.T) {
	set := scaledSet(endpoints(1, 2, 3, 4, 9), []int{0, 1, 2, 3}, 4)
	set.Weights[3] = 2 // d ramping up: 2 of its 16
	d := newDraws(set, seeded(1))
	counts := make([]int, 4)
	const n = 100000
	for range n {
		counts[d.next()]++
	}
	weights := []float64{4, 8, 12, 2}
	for k, w := range weights {
		assert.InDelta(t, w/26, float64(counts[k])/n, 0.02*w/26+0.002, "member %d: %v", k, counts)
	}
}

func TestP2CInvalidConfig(t *testing.T) {
	for _, bias := range []float64{-1, math.NaN(), math.Inf(1)} {
		_, err := NewLeastRequest(LeastRequestConfig{ActiveRequestBias: new(bias)})
		require.ErrorIs(t, err, ErrInvalidConfig, "bias %v", bias)
		require.ErrorContains(t, err, "ActiveRequestBias")
	}
	_, err := NewLeastRequest(LeastRequestConfig{Choices: -1})
	require.ErrorIs(t, err, ErrInvalidConfig)
	require.ErrorContains(t, err, "Choices -1")
	_, err = NewPeakEWMA(PeakEWMAConfig{Choices: -2})
	require.ErrorIs(t, err, ErrInvalidConfig)
	_, err = NewPeakEWMA(PeakEWMAConfig{Decay: -time.Second})
	require.ErrorIs(t, err, ErrInvalidConfig)
	require.ErrorContains(t, err, "Decay -1s")
	require.False(t, errors.Is(err, errors.ErrUnsupported))

	lr, err := NewLeastRequest(LeastRequestConfig{})
	require.NoError(t, err)
	assert.Equal(t, 2, lr.choices)
	assert.Equal(t, 1.0, lr.bias)
	lr, err = NewLeastRequest(LeastRequestConfig{ActiveRequestBias: new(0.0), Choices: 3})
	require.NoError(t, err)
	assert.Equal(t, 0.0, lr.bias)
	assert.Equal(t, 3, lr.choices)
	pe, err := NewPeakEWMA(PeakEWMAConfig{})
	require.NoError(t, err)
	assert.Equal(t, 2, pe.choices)
	assert.Equal(t, 10e6, pe.tau, "10 s in µs")
	t0 := pe.now()
	time.Sleep(time.Millisecond)
	assert.Greater(t, pe.now(), t0, "the default clock moves")
}

// Many goroutines pick and finish at once, with retries, while the Set is
// rebuilt: every count comes back to 0 and no pick is out of range (run it
// with -race).
func TestP2CConcurrent(t *testing.T) {
	all := endpoints(1, 2, 3, 1, 2, 3, 1, 2)
	set := newSet(all, nil)
	lr := newLR(t, LeastRequestConfig{})
	pe := newPE(t, PeakEWMAConfig{})
	for _, s := range []Strategy{lr, pe} {
		p := s.Picker(set)
		var mu sync.Mutex // guards p, which the rebuilding goroutine replaces
		picker := func() Picker {
			mu.Lock()
			defer mu.Unlock()
			return p
		}
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				var tried Tried
				for k := range 2000 {
					p := picker()
					tried.Reset()
					if k%7 == 0 {
						tried.Add(all[g])
					}
					i := p.Pick(nil, &tried)
					if i < 0 || i >= len(all) || all[i] == all[g] && k%7 == 0 {
						t.Errorf("pick %d with %v tried", i, all[g])
						return
					}
					if lo, ok := p.(LatencyObserver); ok && k%2 == 0 {
						lo.DoneAfter(i, Result(k%3), time.Duration(k%50)*time.Millisecond)
					} else {
						p.(Observer).Done(i, Success)
					}
				}
			})
		}
		wg.Go(func() {
			for k := range 50 {
				next := s.Picker(newSet(all, without(len(all), k%len(all))))
				mu.Lock()
				p = next
				mu.Unlock()
			}
		})
		wg.Wait()
		final := s.Picker(set)
		var counts []int
		if s == Strategy(lr) {
			counts = lrActive(final)
		} else {
			counts = pePending(final)
		}
		assert.Equal(t, make([]int, len(all)), counts, "%T", s)
	}
}
