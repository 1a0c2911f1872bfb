package loadweight

import (
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// reportAll has backend i report loads[i] every second for d, from 0.
func reportAll(g *Group, d time.Duration, loads ...Load) {
	for s := time.Duration(0); s <= d; s += time.Second {
		for i, l := range loads {
			g.Report(i, l, at(s))
		}
	}
}

// TestWeightsInverseUtilization: at equal qps and equal configured
// weights, the weights go as 1/utilization (qps/utilization), normalized
// so that their mean is the configured weight.
func TestWeightsInverseUtilization(t *testing.T) {
	g := newGroup(t, Config{})
	reportAll(g, 10*time.Second, Load{QPS: 100, CPU: 0.2}, Load{QPS: 100, CPU: 0.5}, Load{QPS: 100, CPU: 0.8})
	w := g.Weights(at(10*time.Second), []int{1, 1, 1})
	// 500 : 200 : 125, mean 275.
	assert.Equal(t, []int{182, 73, 45}, w)
	assert.Equal(t, []int{100, 100, 100}, g.Weights(at(9*time.Second), []int{1, 1, 1}), "inside the blackout: the configured weights")
}

// TestWeightsVectorsThroughGroup: the §12.1 vectors as two backends'
// reports; the factors are in the ratio of the vector weights.
func TestWeightsVectorsThroughGroup(t *testing.T) {
	g := newGroup(t, Config{Penalty: 2})
	reportAll(g, 10*time.Second, Load{QPS: 100, EPS: 10, CPU: 0.5}, Load{QPS: 200, CPU: 0.8})
	f := g.Factors(at(10*time.Second), []*Window{g.Window(0), g.Window(1)}, []int{1, 1}, nil)
	assert.InDelta(t, 142.857/250, f[0]/f[1], 1e-4)
	assert.InDelta(t, 2, f[0]+f[1], 1e-9, "the mean factor is 1")
}

// TestMeanFallback: backends without a valid weight get the mean (factor
// 1), as in gRPC.
func TestMeanFallback(t *testing.T) {
	g := newGroup(t, Config{})
	reportAll(g, 10*time.Second, Load{QPS: 100, CPU: 0.25}, Load{QPS: 100, CPU: 0.5}, Load{QPS: 100}) // the third is ignored
	g.Window(3)                                                                                       // never reports
	f := g.Factors(at(10*time.Second), []*Window{g.Window(0), g.Window(1), g.Window(2), g.Window(3), nil}, []int{1, 1, 1, 1, 1}, nil)
	// 400 and 200, mean 300.
	require.Len(t, f, 5)
	assert.InDelta(t, 4.0/3, f[0], 1e-9)
	assert.InDelta(t, 2.0/3, f[1], 1e-9)
	assert.Equal(t, []float64{1, 1, 1}, f[2:])
}

// TestFewerThanTwoValid: with fewer than two valid weights the configured
// weights stand (gRPC: round robin).
func TestFewerThanTwoValid(t *testing.T) {
	g := newGroup(t, Config{})
	reportAll(g, 10*time.Second, Load{QPS: 100, CPU: 0.9}, Load{})
	g.Window(2)
	assert.Equal(t, []int{500, 100, 300}, g.Weights(at(10*time.Second), []int{5, 1, 3}))
	assert.Equal(t, []int{}, g.Weights(at(0), []int{}))
}

// TestExpiryFallsBack: when reports stop, the weights expire and the
// configured weights come back.
func TestExpiryFallsBack(t *testing.T) {
	g := newGroup(t, Config{})
	reportAll(g, 20*time.Second, Load{QPS: 100, CPU: 0.2}, Load{QPS: 100, CPU: 0.8})
	assert.Equal(t, []int{160, 40}, g.Weights(at(20*time.Second), []int{1, 1}))
	assert.Equal(t, []int{100, 100}, g.Weights(at(20*time.Second+3*time.Minute), []int{1, 1}))
}

// TestConfiguredWeightsKept: with configured weights that match the
// capacities the reports show, the factors are 1; the configured weights are
// the prior, reports correct them.
func TestConfiguredWeightsKept(t *testing.T) {
	g := newGroup(t, Config{})
	// Backend 0 has 3× the capacity: 3× the qps at the same utilization.
	reportAll(g, 10*time.Second, Load{QPS: 300, CPU: 0.5}, Load{QPS: 100, CPU: 0.5})
	assert.Equal(t, []int{300, 100}, g.Weights(at(10*time.Second), []int{3, 1}))
	// Configured equal, it gets 3× the share: 150 and 50.
	assert.Equal(t, []int{150, 50}, g.Weights(at(10*time.Second), []int{1, 1}))
}

// TestFactorClamp: factors stay within [MinFactor, MaxFactor].
func TestFactorClamp(t *testing.T) {
	g := newGroup(t, Config{MaxFactor: 2})
	reportAll(g, 10*time.Second, Load{QPS: 100, CPU: 0.001}, Load{QPS: 100, CPU: 1}, Load{QPS: 100, CPU: 1})
	f := g.Factors(at(10*time.Second), []*Window{g.Window(0), g.Window(1), g.Window(2)}, []int{1, 1, 1}, nil)
	assert.Equal(t, 2.0, f[0], "clamped to MaxFactor")
	g = newGroup(t, Config{})
	reportAll(g, 10*time.Second, Load{QPS: 100, CPU: 0.001}, Load{QPS: 100, CPU: 100})
	f = g.Factors(at(10*time.Second), []*Window{g.Window(0), g.Window(1)}, []int{1, 1}, nil)
	assert.Equal(t, MinFactor, f[1], "clamped to MinFactor")
	assert.Equal(t, []int{200, 1}, g.Weights(at(10*time.Second), []int{1, 1}), "at least 1 unit")
	g = newGroup(t, Config{})
	loads := []Load{{QPS: 100, CPU: 0.001}}
	configured := []int{1}
	for range 19 {
		loads = append(loads, Load{QPS: 100, CPU: 1})
		configured = append(configured, 1)
	}
	reportAll(g, 10*time.Second, loads...)
	assert.Equal(t, 1000, g.Weights(at(10*time.Second), configured)[0], "MaxFactor 10 by default")
}

// TestFactorsReuseOut: Factors fills out when it has room.
func TestFactorsReuseOut(t *testing.T) {
	g := newGroup(t, Config{})
	out := make([]float64, 0, 4)
	f := g.Factors(at(0), []*Window{g.NewWindow(), g.NewWindow()}, []int{1, 2}, out)
	assert.Equal(t, []float64{1, 1}, f)
	assert.Equal(t, &out[:1][0], &f[0])
	f = g.Factors(at(0), []*Window{g.NewWindow()}, []int{0}, out)
	assert.Equal(t, []float64{1}, f, "a configured weight below 1")
}

func TestUnits(t *testing.T) {
	assert.Equal(t, 150, Units(1, 1.5))
	assert.Equal(t, 1, Units(1, 0))
	assert.Equal(t, 1, Units(1, 0.001))
	assert.Equal(t, 333, Units(10, 1.0/3))
}

func TestIndexAPIBounds(t *testing.T) {
	g := newGroup(t, Config{})
	assert.False(t, g.Report(-1, Load{QPS: 1, CPU: 1}, at(0)))
	g.Observe(-1, time.Second, false, at(0))
	g.Reset(-1)
	g.Reset(0)
	assert.NotNil(t, g.Window(-5))
}

func TestConfigDefaults(t *testing.T) {
	c := Config{}.WithDefaults()
	assert.Equal(t, Config{Blackout: 10 * time.Second, Expiration: 3 * time.Minute, UpdatePeriod: time.Second,
		Penalty: 1, Window: 10 * time.Second, MaxFactor: 10}, c)
	assert.Equal(t, MinUpdatePeriod, Config{UpdatePeriod: time.Millisecond}.WithDefaults().UpdatePeriod, "the 100 ms floor")
	g := newGroup(t, Config{Penalty: 0.5})
	assert.Equal(t, 0.5, g.Config().Penalty)
}

func TestConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		c    Config
		want string
	}{
		{Config{Blackout: -1}, "Blackout"},
		{Config{Expiration: -time.Second}, "Expiration"},
		{Config{UpdatePeriod: -time.Second}, "UpdatePeriod"},
		{Config{Window: -1}, "Window"},
		{Config{Penalty: -1}, "Penalty"},
		{Config{Penalty: math.NaN()}, "Penalty"},
		{Config{Penalty: math.Inf(1)}, "Penalty"},
		{Config{MaxFactor: 0.5}, "MaxFactor"},
		{Config{MaxFactor: math.NaN()}, "MaxFactor"},
		{Config{MaxFactor: math.Inf(1)}, "MaxFactor"},
	} {
		err := tt.c.Validate()
		require.Error(t, err, "%+v", tt.c)
		assert.ErrorContains(t, err, tt.want)
		assert.True(t, errors.Is(err, ErrInvalidConfig))
		_, err = New(tt.c)
		assert.ErrorIs(t, err, ErrInvalidConfig)
	}
	assert.NoError(t, Config{}.Validate())
	assert.NoError(t, Config{Blackout: time.Nanosecond, Penalty: 1e-9, MaxFactor: 1}.Validate())
}

// TestConcurrent: reports, observations and weighing from many goroutines
// (run with -race).
func TestConcurrent(t *testing.T) {
	for _, measured := range []bool{false, true} {
		g := newGroup(t, Config{Measured: measured, Blackout: time.Nanosecond})
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() {
				for k := range 200 {
					now := at(time.Duration(k) * time.Millisecond)
					g.Report(i, Load{QPS: 100, CPU: 0.1 * float64(i+1)}, now)
					g.Observe(i, time.Duration(i+1)*time.Millisecond, k%7 == 0, now)
					g.Weights(now, []int{1, 1, 1, 1})
					g.Window(i).State(now)
				}
			})
		}
		wg.Wait()
		w := g.Weights(at(time.Second), []int{1, 1, 1, 1})
		assert.Greater(t, w[0], w[3], "measured=%v: backend 0 is the least loaded", measured)
	}
}
