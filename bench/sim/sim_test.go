package sim

import (
	"reflect"
	"testing"
)

// small is a short version of the scenario, for tests.
func small() Config {
	c := Default()
	c.Requests, c.Warmup = 20_000, 2_000
	return c
}

func TestRunDeterministic(t *testing.T) {
	c := small()
	for i, p := range Policies(c) {
		a := Run(c, p)
		b := Run(c, Policies(c)[i]) // a fresh strategy: no state carried over
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: two runs differ:\n%+v\n%+v", p.Name, a, b)
		}
		if a.Requests != c.Requests {
			t.Errorf("%s: %d requests measured, want %d", p.Name, a.Requests, c.Requests)
		}
		var sum float64
		for _, s := range a.Shares {
			sum += s
		}
		if sum < 0.999 || sum > 1.001 {
			t.Errorf("%s: shares add up to %v", p.Name, sum)
		}
	}
}

// TestRunShares checks the shares the strategies are built to give, which
// do not depend on timing: round robin and equal-weight SWRR split evenly,
// capacity weights give the slow backend 1/91, and least connections sends
// the slow backend less than an even share.
func TestRunShares(t *testing.T) {
	c := small()
	res := map[string]Result{}
	for _, p := range Policies(c) {
		res[p.Name] = Run(c, p)
	}
	near := func(name string, got, want, tol float64) {
		t.Helper()
		if got < want-tol || got > want+tol {
			t.Errorf("%s: slow share %.4f, want %.4f ± %.4f", name, got, want, tol)
		}
	}
	near("rr", res["rr"].SlowShare, 0.1, 0.001)
	near("swrr", res["swrr"].SlowShare, 0.1, 0.001)
	near("swrr-capw", res["swrr-capw"].SlowShare, 1.0/91, 0.001)
	if s := res["leastconn"].SlowShare; s >= 0.1 {
		t.Errorf("leastconn: slow share %.4f, want < 0.1", s)
	}
	if res["leastconn"].P99 >= res["rr"].P99 {
		t.Errorf("leastconn p99 %.2f ms not below round robin's %.2f ms", res["leastconn"].P99, res["rr"].P99)
	}
}

func TestHashBalance(t *testing.T) {
	keys := HashKeys(100_000)
	for _, n := range []int{10, 100} {
		r := HashBalance(0, n, keys)
		if r.AddStray != 0 || r.RemoveStray != 0 || r.DownDiffers != 0 {
			t.Errorf("n=%d: keys moved where they should not: %+v", n, r)
		}
		if r.MaxAvg < 1 || r.MaxAvg > 1.5 || r.MinAvg > 1 || r.MinAvg < 0.5 {
			t.Errorf("n=%d: max/avg %.3f min/avg %.3f out of range", n, r.MaxAvg, r.MinAvg)
		}
		ideal := 1 / float64(n+1)
		if r.AddMoved < ideal/2 || r.AddMoved > ideal*2 {
			t.Errorf("n=%d: %.4f moved on add, ideal %.4f", n, r.AddMoved, ideal)
		}
	}
}
