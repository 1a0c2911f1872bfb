package loadweight

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Unix(1_700_000_000, 0)

func at(d time.Duration) time.Time { return t0.Add(d) }

func newGroup(t *testing.T, cfg Config) *Group {
	t.Helper()
	g, err := New(cfg)
	require.NoError(t, err)
	return g
}

// TestBlackout: a weight is used only once reports have come for
// Blackout without a break (grpc-go endpointWeight.weight).
func TestBlackout(t *testing.T) {
	w := newGroup(t, Config{}).NewWindow()
	assert.Zero(t, w.Weight(at(0)), "no report yet")
	require.True(t, w.Report(Load{QPS: 100, CPU: 0.5}, at(0)))
	for _, d := range []time.Duration{0, 5 * time.Second, 10*time.Second - 1} {
		w.Report(Load{QPS: 100, CPU: 0.5}, at(d))
		assert.Zero(t, w.Weight(at(d)), "at %v, inside the 10 s blackout", d)
	}
	assert.InDelta(t, 200, w.Weight(at(10*time.Second)), 1e-9, "the blackout ends 10 s after the first report")
	w.Report(Load{QPS: 100, CPU: 0.25}, at(11*time.Second))
	assert.InDelta(t, 400, w.Weight(at(11*time.Second)), 1e-9, "a new report takes effect at once after the blackout")
}

func TestBlackoutConfigured(t *testing.T) {
	w := newGroup(t, Config{Blackout: time.Nanosecond}).NewWindow()
	w.Report(Load{QPS: 100, CPU: 0.5}, at(0))
	assert.InDelta(t, 200, w.Weight(at(time.Nanosecond)), 1e-9)
	w = newGroup(t, Config{Blackout: time.Minute}).NewWindow()
	w.Report(Load{QPS: 100, CPU: 0.5}, at(0))
	assert.Zero(t, w.Weight(at(59*time.Second)))
	assert.NotZero(t, w.Weight(at(time.Minute)))
}

// TestExpiry: a weight without a new report for Expiration is dropped, and
// the reports after it start a new blackout.
func TestExpiry(t *testing.T) {
	w := newGroup(t, Config{}).NewWindow()
	w.Report(Load{QPS: 100, CPU: 0.5}, at(0))
	w.Report(Load{QPS: 100, CPU: 0.5}, at(20*time.Second))
	assert.InDelta(t, 200, w.Weight(at(20*time.Second+3*time.Minute-1)), 1e-9, "just inside 3 min of the last report")
	assert.Zero(t, w.Weight(at(20*time.Second+3*time.Minute)), "3 min after the last report")
	w.Report(Load{QPS: 100, CPU: 0.5}, at(4*time.Minute))
	assert.Zero(t, w.Weight(at(4*time.Minute+9*time.Second)), "a new blackout after the expiry")
	assert.InDelta(t, 200, w.Weight(at(4*time.Minute+10*time.Second)), 1e-9)
}

func TestExpiryConfigured(t *testing.T) {
	w := newGroup(t, Config{Blackout: time.Nanosecond, Expiration: 5 * time.Second}).NewWindow()
	w.Report(Load{QPS: 100, CPU: 0.5}, at(0))
	assert.NotZero(t, w.Weight(at(4*time.Second)))
	assert.Zero(t, w.Weight(at(5*time.Second)))
}

// TestIgnoredReportsKeepTheWeight: an empty report (qps or utilization 0)
// neither updates the weight nor counts as a report against expiry.
func TestIgnoredReportsKeepTheWeight(t *testing.T) {
	w := newGroup(t, Config{}).NewWindow()
	w.Report(Load{QPS: 100, CPU: 0.5}, at(0))
	assert.False(t, w.Report(Load{QPS: 100}, at(time.Minute)))
	assert.False(t, w.Report(Load{CPU: 0.1}, at(time.Minute)))
	assert.InDelta(t, 200, w.Weight(at(time.Minute)), 1e-9)
	assert.Zero(t, w.Weight(at(3*time.Minute)), "the ignored reports did not postpone the expiry")
}

// TestReset: a backend that went down starts a new blackout.
func TestReset(t *testing.T) {
	w := newGroup(t, Config{}).NewWindow()
	w.Report(Load{QPS: 100, CPU: 0.5}, at(0))
	require.NotZero(t, w.Weight(at(10*time.Second)))
	w.Reset()
	assert.Zero(t, w.Weight(at(11*time.Second)))
	w.Report(Load{QPS: 100, CPU: 0.5}, at(12*time.Second))
	assert.Zero(t, w.Weight(at(21*time.Second)))
	assert.NotZero(t, w.Weight(at(22*time.Second)))
	st := w.State(at(22 * time.Second))
	assert.Equal(t, Load{QPS: 100, CPU: 0.5}, st.Last)
	assert.Equal(t, at(12*time.Second), st.At)
	assert.InDelta(t, 200, st.Weight, 1e-9)
}

func TestReportsIgnoredWhenMeasured(t *testing.T) {
	w := newGroup(t, Config{Measured: true}).NewWindow()
	assert.False(t, w.Report(Load{QPS: 100, CPU: 0.5}, at(0)))
	assert.Zero(t, w.Weight(at(time.Minute)))
	r := newGroup(t, Config{}).NewWindow()
	r.Observe(time.Millisecond, false, at(0))
	assert.Zero(t, r.Weight(at(time.Minute)), "Observe outside Measured mode")
	assert.True(t, r.State(at(time.Minute)).At.IsZero())
}

// feed sends n attempts per second to w for d, each of latency lat; every
// failEvery-th fails (none if 0).
func feed(w *Window, from, d time.Duration, rate int, lat time.Duration, failEvery int) {
	step := time.Second / time.Duration(rate)
	k := 0
	for t := from; t < from+d; t += step {
		k++
		w.Observe(lat, failEvery > 0 && k%failEvery == 0, at(t))
	}
}

// TestMeasured: Measured mode's weight is 1/latency without failures, and
// drops with the failure rate.
func TestMeasured(t *testing.T) {
	g := newGroup(t, Config{Measured: true})
	fast, slow, failing := g.NewWindow(), g.NewWindow(), g.NewWindow()
	feed(fast, 0, 30*time.Second, 100, 10*time.Millisecond, 0)
	feed(slow, 0, 30*time.Second, 100, 40*time.Millisecond, 0)
	feed(failing, 0, 30*time.Second, 100, 10*time.Millisecond, 2) // half fail
	now := at(30 * time.Second)
	assert.InDelta(t, 100, fast.Weight(now), 0.5, "1/10ms")
	assert.InDelta(t, 25, slow.Weight(now), 0.5, "1/40ms")
	// (1−e)/(latency·(1−e+e)) at penalty 1, e = 0.5: 50.
	assert.InDelta(t, 50, failing.Weight(now), 0.5)

	st := fast.State(now)
	assert.InDelta(t, 95, st.Last.QPS, 5, "about 100 attempts a second, averaged over 10 s (30 s of history: 1−e^−3)")
	assert.InDelta(t, st.Last.QPS*0.010, st.Last.CPU, 1e-9, "utilization = qps × latency")
	assert.Zero(t, st.Last.EPS)
	fst := failing.State(now)
	assert.InDelta(t, fst.Last.QPS/2, fst.Last.EPS, 0.5)
}

func TestMeasuredPenalty(t *testing.T) {
	g := newGroup(t, Config{Measured: true, Penalty: 3})
	w := g.NewWindow()
	feed(w, 0, 30*time.Second, 100, 10*time.Millisecond, 2)
	// (1−e)/(latency·(1−e+3e)) = 0.5/(0.01·2) = 25.
	assert.InDelta(t, 25, w.Weight(at(30*time.Second)), 0.5)
}

func TestMeasuredAllFailed(t *testing.T) {
	g := newGroup(t, Config{Measured: true})
	w := g.NewWindow()
	feed(w, 0, 20*time.Second, 10, time.Millisecond, 1)
	wt := w.Weight(at(20 * time.Second))
	assert.Greater(t, wt, 0.0, "a weight, not the mean")
	assert.LessOrEqual(t, wt, minWeight)
}

// TestMeasuredForgets: the average follows the backend: one that becomes
// slow loses its weight within a few Windows.
func TestMeasuredForgets(t *testing.T) {
	w := newGroup(t, Config{Measured: true}).NewWindow()
	feed(w, 0, 30*time.Second, 50, 10*time.Millisecond, 0)
	require.InDelta(t, 100, w.Weight(at(30*time.Second)), 1)
	feed(w, 30*time.Second, 60*time.Second, 50, 50*time.Millisecond, 0)
	assert.InDelta(t, 20, w.Weight(at(90*time.Second)), 1)
}

func TestMeasuredBlackoutAndExpiry(t *testing.T) {
	w := newGroup(t, Config{Measured: true}).NewWindow()
	feed(w, 0, 9*time.Second, 10, 10*time.Millisecond, 0)
	assert.Zero(t, w.Weight(at(9*time.Second)), "inside the blackout")
	feed(w, 9*time.Second, 2*time.Second, 10, 10*time.Millisecond, 0)
	assert.NotZero(t, w.Weight(at(11*time.Second)))
	assert.Zero(t, w.Weight(at(11*time.Second+3*time.Minute)), "no request for 3 min")
	w.Reset()
	w.Observe(10*time.Millisecond, false, at(4*time.Minute))
	assert.Zero(t, w.Weight(at(4*time.Minute+time.Second)))
}

// TestMeasuredClockStill: attempts that took no time on the clock (a
// manual clock) give a large finite weight.
func TestMeasuredClockStill(t *testing.T) {
	w := newGroup(t, Config{Measured: true, Blackout: time.Nanosecond}).NewWindow()
	w.Observe(0, false, at(0))
	w.Observe(-time.Second, false, at(0))
	wt := w.Weight(at(time.Second))
	assert.Greater(t, wt, 0.0)
	assert.Less(t, wt, 1e10)
}
