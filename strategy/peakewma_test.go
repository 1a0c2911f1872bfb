package strategy

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// peLoad is the load of All[i] as p would compare it now (ns). Like
// Finagle's load(), reading it decays the cost.
func peLoad(p Picker, i int) float64 {
	ep := p.(*ewmaPicker)
	return ep.st[i].load(ep.micros(), ep.tau)
}

// peCost is the cost of All[i] (ns), without decaying it.
func peCost(p Picker, i int) float64 {
	c, _ := unpack(p.(*ewmaPicker).st[i].word.Load())
	return c
}

// Finagle PeakEwma.scala, τ = 10 s, one member on a manual clock: the
// vector table of load() after each step. The requests are picked, so
// pending counts them, and end through DoneAfter with their latency; the
// last one pending after t=2.2 ends without a latency (Done, a dropped
// pick), since the idle rows of the table have nothing pending.
func TestPeakEWMAVectors(t *testing.T) {
	var clk clock
	pe := newPE(t, PeakEWMAConfig{Now: clk.now})
	p := pe.Picker(newSet(hostEndpoints(1), nil))
	lo := p.(LatencyObserver)
	at := func(s float64) { clk.set(time.Duration(s * float64(time.Second))) }
	// eq checks a load against the table, whose figures (ms) are rounded
	// to the decimals they show.
	eq := func(want float64, decimals int, got float64, step string) {
		t.Helper()
		f := math.Pow(10, float64(decimals))
		assert.Equal(t, want, math.Round(got/1e6*f)/f, "%s: load %.6f ms", step, got/1e6)
	}

	at(0)
	assert.Equal(t, 0.0, peLoad(p, 0), "t=0, no history")
	require.Equal(t, 0, p.Pick(nil, nil))
	assert.Equal(t, penalty+1, peLoad(p, 0), "t=0, 1 pending")
	assert.Equal(t, 140737488355327.0, penalty, "(2^63-1)>>16")

	at(0.1)
	lo.DoneAfter(0, Success, 100*time.Millisecond)
	eq(100.000, 3, peLoad(p, 0), "t=0.1, ends with rtt 100 ms")
	at(1.1)
	eq(90.4837, 4, peLoad(p, 0), "t=1.1, idle")
	for range 3 {
		require.Equal(t, 0, p.Pick(nil, nil))
	}
	eq(361.935, 3, peLoad(p, 0), "t=1.1, 3 pending")
	at(2.1)
	lo.DoneAfter(0, Success, 50*time.Millisecond)
	eq(86.6312, 4, peCost(p, 0), "t=2.1, one ends at 50 ms: cost")
	eq(259.894, 3, peLoad(p, 0), "t=2.1, 2 pending")
	at(2.2)
	lo.DoneAfter(0, Failure, 500*time.Millisecond) // failures count too
	assert.Equal(t, 500e6, peCost(p, 0), "t=2.2, one ends at 500 ms: the peak at once")
	eq(1000, 0, peLoad(p, 0), "t=2.2, 1 pending")
	p.(Observer).Done(0, Ignored)
	assert.Equal(t, []int{0}, pePending(p))
	at(12.2)
	eq(183.940, 3, peLoad(p, 0), "t=12.2, idle")
	at(32.2)
	eq(24.894, 3, peLoad(p, 0), "t=32.2, idle")
}

// tower's peak_ewma test, on Finagle's rules: decay 1 s, two 200 ms
// requests; with one of them still pending the load is twice the cost,
// then the cost alone. (tower starts cost at its default RTT instead of 0
// with a Penalty; with the first request ending at the peak, both give a
// cost of 200 ms.)
func TestPeakEWMATwoRequests(t *testing.T) {
	var clk clock
	pe := newPE(t, PeakEWMAConfig{Now: clk.now, Decay: time.Second})
	p := pe.Picker(newSet(hostEndpoints(1), nil))
	lo := p.(LatencyObserver)
	p.Pick(nil, nil)
	p.Pick(nil, nil)
	clk.set(200 * time.Millisecond)
	lo.DoneAfter(0, Success, 200*time.Millisecond)
	assert.InEpsilon(t, 400e6, peLoad(p, 0), 1e-6)
	lo.DoneAfter(0, Success, 200*time.Millisecond)
	assert.InEpsilon(t, 200e6, peLoad(p, 0), 1e-6)
}

// Finagle's observe, step by step: a lower latency is averaged in with
// weight 1-exp(-Δt/τ); no time passing leaves the cost (or takes the
// peak); a clock that goes back counts as no time and leaves the stamp.
func TestPeakEWMAObserve(t *testing.T) {
	var s ewmaState
	const tau = 1e6 // 1 s in µs
	assert.Equal(t, 0.0, s.observe(0, 5, tau), "nothing to decay")
	assert.Equal(t, uint64(0), s.word.Load(), "and nothing written")
	assert.Equal(t, 1e6, s.observe(1e6, 10, tau), "the first latency is the peak")
	assert.Equal(t, 1e6, s.observe(5e5, 10, tau), "no time passed: w = 1")
	w := math.Exp(-0.5)
	assert.InEpsilon(t, 1e6*w+2e5*(1-w), s.observe(2e5, 500010, tau), 1e-7)
	c := s.observe(0, 400000, tau)
	assert.InEpsilon(t, 1e6*w+2e5*(1-w), c, 1e-7, "back in time: no decay")
	_, stamp := unpack(s.word.Load())
	assert.Equal(t, uint32(500010), stamp, "the stamp does not go back")
	assert.Equal(t, 3e6, s.observe(3e6, 400000, tau), "a peak is taken at any time")
}

// The stamp wraps every 2³² µs (71 min): across the wrap the decay is
// still measured, and a gap of more than half a wrap is measured on the
// full stamp.
func TestPeakEWMAStampWrap(t *testing.T) {
	const tau = 10e6 // 10 s in µs
	var s ewmaState
	t0 := int64(wrap - 1_000_000) // 1 s before the wrap
	s.observe(1e8, t0, tau)
	got := s.observe(0, t0+2_000_000, tau) // 1 s after it
	assert.InEpsilon(t, 1e8*math.Exp(-0.2), got, 1e-6, "across the wrap")

	var l ewmaState
	l.observe(1e8, 0, tau)
	got = l.observe(0, wrap+50, tau) // 71 min later: the low bits say 50 µs
	assert.Less(t, got, 1e-100, "a long gap decays the cost away")
	got = l.observe(0, wrap+50, tau)
	assert.Equal(t, 0.0, got)
}

// A slow member gets fewer requests than fast ones, and a member without
// history that has a request out gets no other until it answers (the
// Penalty).
func TestPeakEWMAMovesAwayFromSlowMember(t *testing.T) {
	var clk clock
	pe := newPE(t, PeakEWMAConfig{Now: clk.now, Rand: seeded(9)})
	p := pe.Picker(newSet(hostEndpoints(4), nil))
	lo := p.(LatencyObserver)
	counts := make([]int, 4)
	for range 4000 {
		clk.advance(time.Millisecond)
		i := p.Pick(nil, nil)
		counts[i]++
		rtt := 10 * time.Millisecond
		if i == 2 {
			rtt = 100 * time.Millisecond
		}
		lo.DoneAfter(i, Success, rtt)
	}
	// The two draws are distinct (Finagle's, not Envoy's with
	// replacement), so c is never compared with itself: it wins only
	// once its cost has decayed below a fast member's loaded one, which
	// 10 ms of idling a 100 ms average barely allows.
	assert.Less(t, counts[2]*4, counts[0], "the slow member: %v", counts)
	assert.Less(t, counts[2], 4000/100, "the slow member: %v", counts)

	// A fresh member with a request out: Penalty, so never chosen while
	// another member is drawn beside it.
	p2 := pe.Picker(newSet(append(hostEndpoints(4), &testEP{name: "e", key: "http://10.0.0.5:80", w: 1}), nil))
	p2.(*ewmaPicker).st[4].pending.Add(1)
	n := 0
	for range 500 {
		i := p2.Pick(nil, nil)
		if i == 4 {
			n++
		}
		p2.(Observer).Done(i, Success)
	}
	assert.Zero(t, n, "picks of the fresh member with a request out")
}

// A retry skips tried members: a tried draw does not count; if every draw
// is tried, the untried member with the lowest load is found by a scan; if
// every member is tried, -1.
func TestPeakEWMATried(t *testing.T) {
	all := hostEndpoints(4)
	var clk clock
	var p Picker
	fresh := func() { // draws b and c, then the scan starts at a
		pe := newPE(t, PeakEWMAConfig{Now: clk.now, Rand: draw(4, 1, 2, 0)})
		p = pe.Picker(newSet(all, nil))
		for i, ms := range []time.Duration{30, 10, 90, 20} {
			p.(*ewmaPicker).st[i].observe(float64(ms*time.Millisecond), 0, pe.tau)
		}
	}
	var tried Tried
	tried.Add(all[1])
	fresh()
	assert.Equal(t, 2, p.Pick(nil, &tried), "b is tried, so c, though it is slower")
	tried.Add(all[2])
	fresh()
	assert.Equal(t, 3, p.Pick(nil, &tried), "both draws tried: the scan finds d")
	assert.Equal(t, []int{0, 0, 0, 1}, pePending(p))
	tried.Add(all[0])
	tried.Add(all[3])
	fresh()
	assert.Equal(t, -1, p.Pick(nil, &tried), "everything tried")
	assert.Equal(t, []int{0, 0, 0, 0}, pePending(p), "a -1 counts nothing")
	pe := newPE(t, PeakEWMAConfig{})
	assert.Equal(t, -1, pe.Picker(newSet(all, []int{})).Pick(nil, nil), "nothing usable")
	assert.Equal(t, 1, pe.Picker(newSet(all, []int{1})).Pick(nil, nil), "one usable member")
}

// The same seed and clock give the same picks; another seed gives others.
func TestPeakEWMADeterministic(t *testing.T) {
	run := func(seed uint64) []int {
		var clk clock
		pe := newPE(t, PeakEWMAConfig{Now: clk.now, Rand: seeded(seed)})
		p := pe.Picker(newSet(endpoints(1, 2, 3, 1, 2, 3), nil))
		var picks []int
		for k := range 300 {
			clk.advance(time.Duration(k%7) * time.Millisecond)
			i := p.Pick(nil, nil)
			picks = append(picks, i)
			p.(LatencyObserver).DoneAfter(i, Success, time.Duration(i+1)*time.Millisecond)
		}
		return picks
	}
	assert.Equal(t, run(42), run(42))
	assert.NotEqual(t, run(42), run(43))
}

// Cost and pending belong to the strategy: a new picker sees what older
// ones learned, a member dropped with requests pending keeps its state,
// and one dropped idle starts afresh.
func TestPeakEWMARebuildKeepsState(t *testing.T) {
	all := hostEndpoints(3)
	var clk clock
	pe := newPE(t, PeakEWMAConfig{Choices: 1, Now: clk.now, Rand: draw(3, 1)}) // every draw is b
	p1 := pe.Picker(newSet(all, nil))
	require.Equal(t, 1, p1.Pick(nil, nil))
	require.Equal(t, 1, p1.Pick(nil, nil))
	p1.(LatencyObserver).DoneAfter(1, Success, 40*time.Millisecond)
	p2 := pe.Picker(newSet([]Endpoint{all[0], all[2]}, nil)) // b dropped, 1 pending
	assert.Equal(t, []int{0, 0}, pePending(p2))
	p3 := pe.Picker(newSet(all, nil))
	assert.Equal(t, []int{0, 1, 0}, pePending(p3), "b back with its request")
	assert.Equal(t, 40e6, peCost(p3, 1), "and its cost")
	p1.(LatencyObserver).DoneAfter(1, Success, 40*time.Millisecond)
	assert.Equal(t, []int{0, 0, 0}, pePending(p3), "an older picker's Done")
	pe.Picker(newSet([]Endpoint{all[0]}, nil)) // b dropped idle
	p4 := pe.Picker(newSet(all, nil))
	assert.Equal(t, 0.0, peCost(p4, 1), "b came back afresh")
	p1.(Observer).Done(1, Success) // one Done too many is ignored
	p1.(Observer).Done(-1, Success)
	assert.Equal(t, []int{0, 0, 0}, pePending(p1))
}

// The draws after the first never repeat it, with equal weights and
// with unequal ones, so a pick always compares two members.
func TestPeakEWMADistinctDraws(t *testing.T) {
	for _, ws := range [][]int{{1, 1, 1, 1}, {100, 1, 1}, {1, 1000}} {
		d := newDraws(newSet(endpoints(ws...), nil), seeded(7))
		seen := make([]int, len(ws))
		for range 10_000 {
			a := d.next()
			b := d.nextOther(a)
			require.NotEqual(t, a, b, "weights %v", ws)
			seen[b]++
		}
		for k, n := range seen {
			assert.Positive(t, n, "weights %v: member %d never drawn second", ws, k)
		}
	}
	one := newDraws(newSet(endpoints(1), nil), seeded(7))
	assert.Equal(t, 0, one.nextOther(0), "one member: itself")
}
