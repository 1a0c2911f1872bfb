package sim

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// policy returns the policy called name from ps.
func policy(t *testing.T, ps []Policy, name string) Policy {
	t.Helper()
	for _, p := range ps {
		if p.Name == name {
			return p
		}
	}
	require.FailNow(t, "no policy "+name)
	return Policy{}
}

func TestTotalVariation(t *testing.T) {
	assert.InDelta(t, 0.0, TotalVariation([]float64{0.5, 0.5}, []float64{0.5, 0.5}), 1e-12)
	assert.InDelta(t, 0.3, TotalVariation([]float64{0.2, 0.8}, []float64{0.5, 0.5}), 1e-12)
	assert.InDelta(t, 1.0, TotalVariation([]float64{1, 0}, []float64{0, 1}), 1e-12)
}

func TestHeldTo(t *testing.T) {
	base := &Phase{P50: 1, P90: 2, P95: 3, P99: 5, P999: 10}
	assert.Equal(t, "p99.9", HeldTo(base, base, 2))
	assert.Equal(t, "p95", HeldTo(&Phase{P50: 1, P90: 2, P95: 6, P99: 11, P999: 10}, base, 2))
	assert.Equal(t, "", HeldTo(&Phase{P50: 3, P90: 2, P95: 3, P99: 5, P999: 10}, base, 2))
}

// TestMidRun: once the backend turns slow, least connections moves away
// from it and round robin keeps sending it an even share; before the
// change both send it about an even share.
func TestMidRun(t *testing.T) {
	c := MidRun(small())
	ps := Policies(c)
	rr := Run(c, policy(t, ps, "rr"))
	lc := Run(c, policy(t, ps, "leastconn"))
	require.NotNil(t, rr.After)
	assert.InDelta(t, 0.1, rr.After.SlowShare, 0.002)
	assert.InDelta(t, 0.1, rr.Before.SlowShare, 0.002)
	assert.InDelta(t, 0.1, lc.Before.SlowShare, 0.03)
	assert.Less(t, lc.After.SlowShare, rr.After.SlowShare/3)
	assert.Less(t, lc.After.P99, rr.After.P99/10)

	base := Run(Healthy(c), policy(t, ps, "leastconn"))
	assert.InDelta(t, 0.1, base.After.SlowShare, 0.03, "healthy baseline: the backend never slows")
	assert.Less(t, heldIndex(HeldTo(rr.After, PhaseOf(Run(Healthy(c), policy(t, ps, "rr"))), 2)),
		heldIndex(HeldTo(lc.After, base.After, 2)), "least connections holds a higher quantile than round robin")
}

func heldIndex(q string) int {
	for i, x := range Quantiles {
		if x.Name == q {
			return i
		}
	}
	return -1
}

// smallCaps is a short capacity workload that still measures after A58's
// 10 s blackout and the queues built up during it have drained.
func smallCaps() CapConfig {
	cc := DefaultCapacities()
	cc.Requests = 20_000
	return cc
}

// TestCapacities: SWRR with weights 1 splits evenly (TV from the ideal is
// computable by hand), SWRR with the capacities as weights is ideal, and
// least connections, which learns load from its counts, is in between.
func TestCapacities(t *testing.T) {
	cc := smallCaps()
	ps := CapacityPolicies(cc)
	even := make([]float64, len(cc.Caps))
	for i := range even {
		even[i] = 1 / float64(len(even))
	}
	swrr := RunCapacities(cc, policy(t, ps, "swrr"))
	assert.InDelta(t, TotalVariation(even, cc.Ideal()), swrr.TV, 1e-9)
	capw := RunCapacities(cc, policy(t, ps, "swrr-capw"))
	assert.Less(t, capw.TV, 0.002)
	lc := RunCapacities(cc, policy(t, ps, "leastconn"))
	assert.Less(t, lc.TV, swrr.TV/2)
	assert.Greater(t, lc.TV, capw.TV)

	// Dynamic weights learn the capacities: far closer to the ideal than
	// SWRR with the weights it was configured with, and than least
	// connections.
	for _, name := range []string{"dynamic-orca", "dynamic-measured"} {
		d := RunCapacities(cc, policy(t, ps, name))
		assert.Less(t, d.TV, swrr.TV/10, name)
		assert.Less(t, d.TV, lc.TV, name)
		assert.Less(t, d.P99, 10*capw.P99, "%s: settled, no queue left from the blackout", name)
	}
	// From a cold start the blackout (10 s of equal weights) shows.
	cold := RunCapacities(cc.Cold(12), policy(t, ps, "dynamic-orca"))
	assert.Greater(t, cold.TV, 0.2)
}

func smallHot() HotConfig {
	hc := DefaultHotKeys()
	hc.Requests, hc.Warmup = 20_000, 2_000
	return hc
}

// TestHotKeys: Zipf keys overload one backend of a plain ring (the §5.4
// figure is 2.34 for a static count); a joining backend takes about its
// share of the requests and moves none between the others.
func TestHotKeys(t *testing.T) {
	hc := smallHot()
	r := RunHotKeys(hc, policy(t, HotKeyPolicies(hc), "hash"))
	assert.Greater(t, r.ShareMaxAvg, 1.8)
	assert.Greater(t, r.ShareMaxAvg, 1/hc.Load, "the hottest backend is offered more than its capacity")
	assert.InDelta(t, 1.0, r.Spread, 1e-9, "a plain ring sends every key to one backend")
	assert.Greater(t, r.Moved, 0.0)
	assert.Less(t, r.Moved, 2*r.MovedIdeal)
	assert.Less(t, r.KeysMoved, 2*r.MovedIdeal)
	assert.Greater(t, r.KeysMoved, r.MovedIdeal/2)
}

// TestHotKeysBounded: a bounded-load hash keeps every backend's requests,
// and those in flight at once, within about c × the mean (Mirrokni et
// al.'s bound, HAProxy's hash-balance-factor), where the plain ring's
// hottest backend has over twice the mean; a smaller c spreads hot keys
// over more backends and sends more requests off their first choice.
func TestHotKeysBounded(t *testing.T) {
	hc := smallHot()
	ps := HotKeyPolicies(hc)
	plain := RunHotKeys(hc, policy(t, ps, "hash"))
	var prev *HotResult
	for _, c := range hc.Factors {
		r := RunHotKeys(hc, policy(t, ps, fmt.Sprintf("bounded-%g", c)))
		assert.Equal(t, c, r.Factor)
		assert.LessOrEqual(t, r.ShareMaxAvg, c, "c=%g", c)
		assert.Less(t, r.InFlightMaxAvg, c+0.1, "c=%g: the bound is ⌈c·(m+1)/n⌉", c)
		assert.Less(t, r.P99, plain.P99/10, "c=%g: no backend overloaded", c)
		assert.Greater(t, r.Spread, 1.0)
		if prev != nil {
			assert.Less(t, r.OffFirst, prev.OffFirst, "c=%g", c)
			assert.Less(t, r.Spread, prev.Spread, "c=%g", c)
		}
		prev = &r
	}
	assert.InDelta(t, 0.0, plain.OffFirst, 1e-12)
}

func smallHerd() HerdConfig {
	hc := DefaultHerd()
	hc.Requests, hc.Warmup = 40_000, 4_000
	return hc
}

// TestHerd: instances of least connections that each see only their own
// counts put a whole burst on one backend; one strategy object shared by
// all of them (global counts) spreads it.
func TestHerd(t *testing.T) {
	hc := smallHerd()
	ps := HerdPolicies()
	lc := RunHerd(hc, policy(t, ps, "leastconn"))
	assert.Equal(t, hc.Requests, lc.Requests)
	assert.GreaterOrEqual(t, lc.MaxQueue, hc.Instances, "a burst lands on one backend")
	shared := RunHerd(hc, policy(t, ps, "leastconn-shared"))
	assert.LessOrEqual(t, shared.MaxQueue, 3)
	assert.Less(t, shared.Imbalance, lc.Imbalance/2)
	assert.Less(t, shared.P99, lc.P99)
}

// TestBins: one uniform choice fills the fullest of n bins to about
// ln n / ln ln n and more (its O(1) term), as Mitzenmacher's Table 1 shows.
func TestBins(t *testing.T) {
	u := Bins(1000, 200, 1, Uniform)
	assert.Greater(t, u.MeanMax, u.OneChoice)
	assert.Less(t, u.MeanMax, 2*u.OneChoice)
	assert.InDelta(t, math.Log(1000)/math.Log(math.Log(1000)), u.OneChoice, 1e-12)
}

// TestWorkloadsDeterministic: every workload gives the same result twice.
func TestWorkloadsDeterministic(t *testing.T) {
	hc := smallHerd()
	hc.Requests, hc.Warmup = 4_000, 400
	for _, p := range Lineup() {
		assert.Equal(t, RunHerd(hc, p), RunHerd(hc, p), p.Name)
	}
	cc := smallCaps()
	cc.Requests, cc.Warmup = 4_000, 400
	for _, p := range CapacityPolicies(cc) {
		assert.Equal(t, RunCapacities(cc, p), RunCapacities(cc, p), p.Name)
	}
	hk := smallHot()
	hk.Requests, hk.Warmup = 4_000, 400
	for _, p := range HotKeyPolicies(hk) {
		assert.Equal(t, RunHotKeys(hk, p), RunHotKeys(hk, p), p.Name)
	}
}

// TestP2C: peak EWMA learns the slow backend's latency and sends it far
// less than round robin; in the herd, least request's random choices
// spread the bursts that least connections' shared tie order piles up;
// two choices beat one in balls into bins, within Mitzenmacher's
// ln ln n / ln 2 + O(1).
func TestP2C(t *testing.T) {
	c := MidRun(small())
	ps := Policies(c)
	rr := Run(c, policy(t, ps, "rr"))
	pe := Run(c, policy(t, ps, "peakewma"))
	assert.Less(t, pe.After.SlowShare, rr.After.SlowShare/5)
	assert.Less(t, pe.After.P99, rr.After.P99/10)

	hc := smallHerd()
	hp := HerdPolicies()
	lc := RunHerd(hc, policy(t, hp, "leastconn"))
	lr := RunHerd(hc, policy(t, hp, "leastrequest"))
	assert.Less(t, lr.Imbalance, lc.Imbalance)
	assert.Less(t, lr.MaxQueue, lc.MaxQueue)
	assert.Less(t, lr.P99, lc.P99)

	bp := BinsPolicies()
	one := Bins(1000, 200, 1, policy(t, bp, "leastrequest-1"))
	two := Bins(1000, 200, 1, policy(t, bp, "leastrequest"))
	assert.Less(t, two.MeanMax, one.MeanMax-1)
	assert.Less(t, two.MeanMax, two.TwoChoices+2)
}
