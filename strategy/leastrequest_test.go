package strategy

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lrSetActive sets the in-flight counts of All.
func lrSetActive(p Picker, active ...int) {
	for i, a := range active {
		p.(*lrPicker).st[i].active.Store(int64(a))
	}
}

// Envoy least_request, equal weights (least_request_lb.cc,
// unweightedHostPick): the first draw stays unless a later one has strictly
// fewer requests in flight. Active 5 2 7 2: draws (0,1) → 1, (1,3) → 1 (a
// tie keeps the first), (2,2) → 2.
func TestLeastRequestVectorsEqualWeights(t *testing.T) {
	for _, c := range []struct{ d0, d1, want int }{
		{0, 1, 1},
		{1, 3, 1},
		{2, 2, 2},
		{3, 1, 3},
		{2, 0, 0},
	} {
		lr := newLR(t, LeastRequestConfig{Rand: draw(4, c.d0, c.d1)})
		p := lr.Picker(newSet(hostEndpoints(4), nil))
		lrSetActive(p, 5, 2, 7, 2)
		got := p.Pick(nil, nil)
		assert.Equal(t, c.want, got, "draws (%d,%d)", c.d0, c.d1)
		want := []int{5, 2, 7, 2}
		want[c.want]++
		assert.Equal(t, want, lrActive(p), "the pick is counted")
		p.(Observer).Done(got, Failure)
		assert.Equal(t, []int{5, 2, 7, 2}, lrActive(p), "Done uncounts it, whatever the result")
	}
}

// Envoy least_request, unequal weights: the effective weight is
// w/(active+1)^active_request_bias. Vectors: w=2, active=4 → 0.4 at bias 1,
// 0.894 at 0.5, 2 at 0; w=100, active=9 → 10 at bias 1, 1 at bias 2.
func TestLeastRequestEffectiveWeight(t *testing.T) {
	for _, c := range []struct {
		w      int
		active int64
		bias   float64
		want   float64
	}{
		{2, 4, 1, 0.4},
		{2, 4, 0.5, 0.894},
		{2, 4, 0, 2},
		{100, 9, 1, 10},
		{100, 9, 2, 1},
		{100, 9, 0.75, 100 / 5.623413},
	} {
		assert.InDelta(t, c.want, effectiveWeight(c.w, c.active, c.bias), 5e-4, "w=%d active=%d bias=%v", c.w, c.active, c.bias)
	}
}

// The same vectors decide picks between members of unequal weights, the
// higher effective weight winning and a tie keeping the first draw. The
// draws are (a, b) and (b, a).
func TestLeastRequestVectorsUnequalWeights(t *testing.T) {
	for _, c := range []struct {
		wa, aa, wb, ab int
		bias           float64
		want           string // winner of (a, b), then of (b, a)
	}{
		{2, 4, 1, 1, 1, "b b"},    // 0.4 < 0.5
		{2, 4, 1, 1, 0.5, "a a"},  // 0.894 > 0.707
		{2, 4, 1, 1, 0, "a a"},    // 2 > 1: weights alone
		{100, 9, 10, 0, 1, "a b"}, // 10 = 10: the first draw stays
		{100, 9, 10, 0, 2, "b b"}, // 1 < 10
	} {
		all := []Endpoint{
			&testEP{name: "a", key: "http://10.0.0.1:80", w: c.wa},
			&testEP{name: "b", key: "http://10.0.0.2:80", w: c.wb},
		}
		rnd := scripted(col(0, 2), col(1, 2), col(1, 2), col(0, 2))
		lr := newLR(t, LeastRequestConfig{Rand: rnd, ActiveRequestBias: new(c.bias)})
		p := lr.Picker(newSet(all, nil))
		var got []string
		for range 2 {
			lrSetActive(p, c.aa, c.ab)
			got = append(got, name(all, p.Pick(nil, nil)))
		}
		assert.Equal(t, c.want, fmt.Sprint(got[0], " ", got[1]), "%+v", c)
	}
}

// At bias 1 the comparison without division agrees with the effective
// weights Envoy computes.
func TestLeastRequestBetterMatchesEffectiveWeight(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, bias := range []float64{1, 0, 0.5, 2} {
		p := &lrPicker{bias: bias}
		for range 2000 {
			w, bw := 1+r.IntN(20), 1+r.IntN(20)
			a, ba := int64(r.IntN(30)), int64(r.IntN(30))
			want := effectiveWeight(w, a, bias) > effectiveWeight(bw, ba, bias)
			if w == bw {
				want = a < ba
			}
			require.Equal(t, want, p.better(w, a, bw, ba), "bias %v: w=%d a=%d vs w=%d a=%d", bias, w, a, bw, ba)
		}
	}
}

// A retry skips tried members: a tried draw does not count; if every draw
// is tried, the least loaded untried member is found by a scan; if every
// member is tried, -1.
func TestLeastRequestTried(t *testing.T) {
	all := hostEndpoints(4)
	var p Picker
	fresh := func() { // draws b and c, then the scan starts at a
		p = newLR(t, LeastRequestConfig{Rand: draw(4, 1, 2, 0)}).Picker(newSet(all, nil))
		lrSetActive(p, 3, 0, 9, 1)
	}
	var tried Tried
	tried.Add(all[1])
	fresh()
	assert.Equal(t, 2, p.Pick(nil, &tried), "b is tried, so c, the other draw, though it is busier")
	tried.Add(all[2])
	fresh()
	assert.Equal(t, 3, p.Pick(nil, &tried), "both draws tried: the scan finds d")
	tried.Add(all[0])
	tried.Add(all[3])
	fresh()
	assert.Equal(t, -1, p.Pick(nil, &tried), "everything tried")
	assert.Equal(t, []int{3, 0, 9, 1}, lrActive(p), "a -1 counts nothing")

	lr := newLR(t, LeastRequestConfig{})
	p = lr.Picker(newSet(all, []int{}))
	assert.Equal(t, -1, p.Pick(nil, nil), "nothing usable")
	p = lr.Picker(newSet(all, []int{2}))
	assert.Equal(t, 2, p.Pick(nil, nil), "one usable member")
}

// Power of two choices keeps the members even (Mitzenmacher 2001: the
// maximum load is ln ln n/ln 2 + O(1) above the mean, against ln n/ln ln n
// for one random choice): 20,000 requests that never finish, over 10
// members, end within a few requests of each other, while a single choice
// spreads them by far more.
func TestLeastRequestBalancesLoad(t *testing.T) {
	spread := func(choices int) int {
		lr := newLR(t, LeastRequestConfig{Choices: choices, Rand: seeded(11)})
		p := lr.Picker(newSet(hostEndpoints(10), nil))
		for range 20000 {
			require.GreaterOrEqual(t, p.Pick(nil, nil), 0)
		}
		c := lrActive(p)
		return slices.Max(c) - slices.Min(c)
	}
	two, one := spread(2), spread(1)
	assert.LessOrEqual(t, two, 6, "two choices")
	assert.Greater(t, one, 5*two, "one choice (%d) against two (%d)", one, two)
}

// A member with many requests in flight gets a new one only when both
// draws are on it: 1/25 of the picks over 5 members.
func TestLeastRequestAvoidsBusyMember(t *testing.T) {
	lr := newLR(t, LeastRequestConfig{Rand: seeded(5)})
	p := lr.Picker(newSet(hostEndpoints(5), nil))
	o := p.(Observer)
	lrSetActive(p, 0, 0, 100, 0, 0)
	counts := make([]int, 5)
	const n = 20000
	for range n {
		i := p.Pick(nil, nil)
		counts[i]++
		o.Done(i, Success)
	}
	assert.InDelta(t, 1.0/25, float64(counts[2])/n, 0.01, "the busy member: %v", counts)
	for _, i := range []int{0, 1, 3, 4} {
		assert.InDelta(t, 0.24, float64(counts[i])/n, 0.02, "member %d: %v", i, counts)
	}
}

// The same seed gives the same picks; another seed gives others.
func TestLeastRequestDeterministic(t *testing.T) {
	run := func(seed uint64) []int {
		lr := newLR(t, LeastRequestConfig{Rand: seeded(seed)})
		all := endpoints(1, 2, 3, 1, 2, 3)
		p := lr.Picker(newSet(all, nil))
		var picks []int
		for k := range 300 {
			i := p.Pick(nil, nil)
			picks = append(picks, i)
			if k%3 != 0 {
				p.(Observer).Done(i, Success)
			}
		}
		return picks
	}
	assert.Equal(t, run(42), run(42))
	assert.NotEqual(t, run(42), run(43))
}

// Counts belong to the strategy: a new picker sees the requests older ones
// picked, and an older picker's Done uncounts them. A member dropped with
// requests in flight keeps its count when it comes back; one dropped idle
// starts afresh.
func TestLeastRequestRebuildKeepsState(t *testing.T) {
	all := hostEndpoints(3)
	lr := newLR(t, LeastRequestConfig{Rand: draw(3, 1)}) // every draw is b
	p1 := lr.Picker(newSet(all, nil))
	for range 3 {
		require.Equal(t, 1, p1.Pick(nil, nil))
	}
	var tried Tried
	tried.Add(all[1])
	require.Equal(t, 2, p1.Pick(nil, &tried), "the scan from b: c, and a only ties")
	p2 := lr.Picker(newSet(all, []int{0, 2}))
	assert.Equal(t, []int{0, 3, 1}, lrActive(p2))
	p1.(Observer).Done(1, Success)
	assert.Equal(t, []int{0, 2, 1}, lrActive(p2), "an older picker's Done")

	p3 := lr.Picker(newSet([]Endpoint{all[0], all[2]}, nil)) // b dropped with 2 in flight
	assert.Equal(t, []int{0, 1}, lrActive(p3))
	p4 := lr.Picker(newSet([]Endpoint{all[2], all[1]}, nil)) // a dropped idle, b back
	assert.Equal(t, []int{1, 2}, lrActive(p4), "b kept its count while away")
	p5 := lr.Picker(newSet(all, nil))
	assert.NotSame(t, p1.(*lrPicker).st[0], p5.(*lrPicker).st[0], "a came back afresh")
	assert.Same(t, p1.(*lrPicker).st[1], p5.(*lrPicker).st[1])
	p1.(Observer).Done(2, Success)
	assert.Equal(t, []int{0, 2, 0}, lrActive(p5))
	for range 3 { // one Done too many is ignored
		p1.(Observer).Done(1, Success)
	}
	p1.(Observer).Done(7, Success) // out of range: ignored
	assert.Equal(t, []int{0, 0, 0}, lrActive(p5))
}
