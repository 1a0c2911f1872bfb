package strategy

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
)

// zipfRun is what zipfWorkload measured.
type zipfRun struct {
	peak    float64 // the largest max/avg in flight seen after a pick
	mean    float64 // max/avg averaged over the picks
	overCap int     // picks after which some member had more than ⌈c·avg⌉
	offHome int     // picks that did not go where ConsistentHash sends the key
	picks   int
}

// zipfWorkload sends requests for 10,000 keys with Zipf(1.1) popularity
// (math/rand/v2, fixed seed) through p over the members of set, all of
// weight 1, holding inflight requests: once that many are in flight,
// every new one is followed by the completion of a random request in
// flight. After warm-up it samples, after every pick, the busiest member's
// load over the average; pct (c as a percentage) gives the ⌈c·avg⌉ to
// count picks against.
func zipfWorkload(p, home Picker, set *Set, inflight, picks int, pct int) zipfRun {
	rng := rand.New(rand.NewPCG(1, 1))
	zipf := rand.NewZipf(rng, 1.1, 1, 9999)
	keys := make([]string, 10_000)
	for k := range keys {
		keys[k] = "key-" + strconv.Itoa(k)
	}
	n := len(set.All)
	load := make([]int, n)
	type req struct{ i int }
	var pending []req
	obs, _ := p.(Observer)
	var run zipfRun
	for k := range inflight + picks {
		r := keyReq(keys[zipf.Uint64()])
		i := p.Pick(r, nil)
		if home.Pick(r, nil) != i {
			run.offHome++
		}
		load[i]++
		pending = append(pending, req{i})
		if k >= inflight { // warmed up: sample, then let one finish
			top := 0
			for _, l := range load {
				top = max(top, l)
			}
			t := len(pending)
			ratio := float64(top) * float64(n) / float64(t)
			run.peak = max(run.peak, ratio)
			run.mean += ratio
			run.picks++
			if top > (t*pct+100*n-1)/(100*n) {
				run.overCap++
			}
			j := rng.IntN(len(pending))
			done := pending[j]
			pending[j] = pending[len(pending)-1]
			pending = pending[:len(pending)-1]
			load[done.i]--
			if obs != nil {
				obs.Done(done.i, Success)
			}
		}
	}
	run.mean /= float64(run.picks)
	return run
}

// TestBoundedHashZipf is property 5: hot keys (Zipf s=1.1 over 10,000
// keys) over 10 backends with 1,000 requests in flight. With c = 1.1, 1.25
// and 1.5, the busiest backend never holds more than ⌈c·avg⌉ (at most
// c + 1/avg times the average, for the rounding up); a plain ConsistentHash
// puts far more on the hot keys' homes.
func TestBoundedHashZipf(t *testing.T) {
	set := newSet(hostEndpoints(10), nil)
	const inflight, picks = 1000, 50_000
	ch := NewConsistentHash(headerKey).Picker(set)
	plain := zipfWorkload(ch, ch, set, inflight, picks, 125)
	t.Logf("ConsistentHash: max/avg in flight peak %.3f, mean %.3f", plain.peak, plain.mean)
	if plain.peak < 1.8 {
		t.Errorf("ConsistentHash max/avg peak %.3f; the workload is meant to be skewed (§5.4: 2.34)", plain.peak)
	}
	for _, pct := range []int{110, 125, 150} {
		c := float64(pct) / 100
		t.Run(fmt.Sprint("c=", c), func(t *testing.T) {
			run := zipfWorkload(NewBoundedHash(headerKey, c).Picker(set), ch, set, inflight, picks, pct)
			t.Logf("BoundedHash c=%.2f: max/avg in flight peak %.3f, mean %.3f; %.1f%% of requests off their ConsistentHash backend",
				c, run.peak, run.mean, 100*float64(run.offHome)/float64(inflight+picks))
			if run.overCap > 0 {
				t.Errorf("%d of %d picks left a backend above ⌈c·avg⌉", run.overCap, run.picks)
			}
			if lim := c + float64(len(set.All))/(inflight+1); run.peak > lim {
				t.Errorf("max/avg peak %.3f; want ≤ c + 1/avg = %.3f", run.peak, lim)
			}
			if run.peak >= plain.peak {
				t.Errorf("max/avg peak %.3f, no better than ConsistentHash's %.3f", run.peak, plain.peak)
			}
		})
	}
}
