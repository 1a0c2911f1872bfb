package strategy

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// bhSim drives a BoundedHash through random sequences of picks, retries,
// completions and rebuilds in one goroutine, and checks every pick against
// a reference built from other parts: HAProxy's slot formula (refSlots)
// over the in-flight counts the simulation keeps itself, and
// ConsistentHash's walk with the full members marked as tried.
type bhSim struct {
	t    *testing.T
	rng  *rand.Rand
	pct  uint // c as HAProxy's percentage
	pool []Endpoint
	s    *BoundedHash
	set  *Set
	p    Picker
	chs  *ConsistentHash
	ch   Picker // chs's picker over set
	load map[Endpoint]int
	// pending are the picks not yet done, each with the picker that made it.
	pending []bhPending
	equal   bool // weights all 1, every member in and up: check ⌈c·avg⌉
}

type bhPending struct {
	p Observer
	i int
	e Endpoint
}

func newBHSim(t *testing.T, seed uint64, pct uint, weights []int, equal bool) *bhSim {
	sim := &bhSim{
		t: t, rng: rand.New(rand.NewPCG(seed, 42)), pct: pct, equal: equal,
		s: NewBoundedHash(headerKey, float64(pct)/100), load: make(map[Endpoint]int),
		chs: NewConsistentHash(headerKey),
	}
	sim.pool = endpoints(weights...)
	sim.rebuild()
	return sim
}

// rebuild makes a new Set: unless equal, a random membership, usable
// subset and slow-start ramp.
func (sim *bhSim) rebuild() {
	set := &Set{Scale: 4}
	for _, e := range sim.pool {
		if !sim.equal && sim.rng.IntN(6) == 0 {
			continue // not a member
		}
		w := e.Weight() * set.Scale
		if !sim.equal && sim.rng.IntN(4) == 0 {
			w = max(w*sim.rng.IntN(4)/4, 1) // ramping up
		}
		if sim.equal || sim.rng.IntN(5) != 0 {
			set.Usable = append(set.Usable, len(set.All))
		}
		set.All = append(set.All, e)
		set.Weights = append(set.Weights, w)
	}
	sim.set = set
	sim.p = sim.s.Picker(set)
	sim.ch = sim.chs.Picker(set)
}

// pick makes one pick of key with tried and checks it.
func (sim *bhSim) pick(key string, tried *Tried) {
	t, set := sim.t, sim.set
	r := keyReq(key)
	// T and the slots of the usable members, from the simulation's counts.
	served := 0
	var ew []uint
	for _, i := range set.Usable {
		served += sim.load[set.All[i]]
		ew = append(ew, uint(set.Weights[i]))
	}
	want := -2 // anything usable and untried
	if len(set.Usable) > 0 && key != "" && len(set.All) >= 2 {
		slots := refSlots(uint(served), sim.pct, ew)
		var skip Tried // tried, and the full members
		for _, i := range set.Usable {
			if e := set.All[i]; tried.Has(e) {
				skip.Add(e)
			}
		}
		for k, i := range set.Usable {
			if e := set.All[i]; uint(sim.load[e]) >= slots[k] && !skip.Has(e) {
				skip.Add(e)
			}
		}
		want = sim.ch.Pick(r, &skip)
		if want < 0 && tried.Len() == 0 {
			t.Fatalf("no member has room: T=%d slots %v", served, slots)
		}
		if want < 0 {
			want = sim.ch.Pick(r, tried) // every untried member full
		} else {
			sim.checkBound(want, served)
		}
	}
	got := sim.p.Pick(r, tried)
	switch {
	case want >= -1 && got != want:
		t.Fatalf("key %q, tried %d: picked %s; want %s (loads %v, usable %v, weights %v)",
			key, tried.Len(), name(set.All, got), name(set.All, want), sim.loads(), set.Usable, set.Weights)
	case got == -1:
		for _, i := range set.Usable {
			if !tried.Has(set.All[i]) {
				t.Fatalf("key %q: -1 with %s usable and untried", key, name(set.All, i))
			}
		}
		return
	case !sim.usable(got) || tried.Has(set.All[got]):
		t.Fatalf("key %q: picked %s, not usable or tried", key, name(set.All, got))
	}
	e := set.All[got]
	sim.load[e]++
	sim.pending = append(sim.pending, bhPending{sim.p.(Observer), got, e})
}

// checkBound checks that a pick of All[i] with T=served keeps it within
// ⌈tot·w/W⌉ (tot = ⌈(T+1)·c⌉), and, with equal weights, within ⌈c·avg⌉,
// avg counting the new request.
func (sim *bhSim) checkBound(i, served int) {
	set := sim.set
	n, tw := len(set.Usable), 0
	for _, u := range set.Usable {
		tw += set.Weights[u]
	}
	after := sim.load[set.All[i]] + 1
	tot := ((served+1)*int(sim.pct) + 99) / 100
	if bound := max(1, (tot*set.Weights[i]+tw-1)/tw); after > bound {
		sim.t.Fatalf("%s takes its %dth request; bound %d (T=%d)", name(set.All, i), after, bound, served)
	}
	if !sim.equal {
		return
	}
	if bound := ((served+1)*int(sim.pct) + 100*n - 1) / (100 * n); after > max(bound, 1) {
		sim.t.Fatalf("%s takes its %dth request; ⌈c·avg⌉ = %d (T=%d, %d members)", name(set.All, i), after, bound, served+1, n)
	}
}

// done finishes a random pending pick.
func (sim *bhSim) done() {
	if len(sim.pending) == 0 {
		return
	}
	k := sim.rng.IntN(len(sim.pending))
	pp := sim.pending[k]
	sim.pending[k] = sim.pending[len(sim.pending)-1]
	sim.pending = sim.pending[:len(sim.pending)-1]
	sim.load[pp.e]--
	pp.p.Done(pp.i, Result(sim.rng.IntN(3)))
}

// check compares the strategy's counts with the simulation's.
func (sim *bhSim) check() {
	total := 0
	for _, e := range sim.pool {
		total += sim.load[e]
		if got := sim.s.InFlight(e); got != sim.load[e] {
			sim.t.Fatalf("%v: %d in flight; want %d", e, got, sim.load[e])
		}
	}
	if got := sim.s.total.Load(); got != int64(total) {
		sim.t.Fatalf("total in flight %d; want %d", got, total)
	}
}

func (sim *bhSim) loads() []int {
	out := make([]int, len(sim.set.All))
	for i, e := range sim.set.All {
		out[i] = sim.load[e]
	}
	return out
}

func (sim *bhSim) usable(i int) bool {
	for _, u := range sim.set.Usable {
		if u == i {
			return true
		}
	}
	return false
}

// run makes ops random operations: mostly picks of a few hot keys (some
// empty), retries with one or two members tried, completions and, unless
// equal, rebuilds.
func (sim *bhSim) run(ops int) {
	zipf := rand.NewZipf(sim.rng, 1.1, 1, 49)
	for range ops {
		switch op := sim.rng.IntN(100); {
		case op < 55:
			key := "k" + strconv.FormatUint(zipf.Uint64(), 10)
			if sim.rng.IntN(20) == 0 {
				key = ""
			}
			sim.pick(key, nil)
		case op < 65:
			var tried Tried
			for range 1 + sim.rng.IntN(2) {
				tried.Add(sim.pool[sim.rng.IntN(len(sim.pool))])
			}
			sim.pick("k"+strconv.FormatUint(zipf.Uint64(), 10), &tried)
		case op < 98:
			sim.done()
		default:
			if !sim.equal {
				sim.rebuild()
			}
		}
		sim.check()
	}
	for len(sim.pending) > 0 {
		sim.done()
	}
	sim.check()
}

// TestBoundedHashBound is property 1, in one goroutine: over random
// interleavings of picks, retries, completions and rebuilds, every pick
// goes to the first member along the key's walk with room by HAProxy's
// formula (as the simulation's own counts give it), no pick takes a member
// past ⌈tot·w/W⌉, and with equal weights past ⌈c·avg⌉; the counts match
// the simulation's throughout and return to 0.
func TestBoundedHashBound(t *testing.T) {
	for _, pct := range []uint{100, 110, 125, 200} {
		for seed := range uint64(4) {
			t.Run(fmt.Sprint("c=", pct, "% seed ", seed), func(t *testing.T) {
				newBHSim(t, seed, pct, []int{1, 2, 3, 1, 5, 2, 1, 1}, false).run(3000)
				newBHSim(t, seed, pct, []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, true).run(3000)
			})
		}
	}
}

// TestBoundedHashConcurrent picks and completes from several goroutines
// while another publishes new pickers, for the race detector, and checks
// that every count is back to 0 at the end.
func TestBoundedHashConcurrent(t *testing.T) {
	all := hostEndpoints(6)
	s := NewBoundedHash(headerKey, 1.25)
	var cur atomic.Pointer[bhPicker]
	cur.Store(s.Picker(newSet(all, nil)).(*bhPicker))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(7, 7))
		for {
			select {
			case <-stop:
				return
			default:
			}
			n := len(all) - rng.IntN(2) // the last member sometimes dropped
			usable := without(n, rng.IntN(n))
			cur.Store(s.Picker(newSet(all[:n], usable)).(*bhPicker))
		}
	})
	var bad atomic.Int64
	var workers sync.WaitGroup
	for g := range 4 {
		workers.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			type held struct {
				p *bhPicker
				i int
			}
			var mine []held
			for k := range 3000 {
				p := cur.Load()
				var tried *Tried
				if k%7 == 0 {
					tried = new(Tried)
					tried.Add(all[rng.IntN(len(all))])
				}
				i := p.Pick(keyReq("k"+strconv.Itoa(rng.IntN(20))), tried)
				if i < 0 || !p.ok[i] {
					bad.Add(1)
					continue
				}
				mine = append(mine, held{p, i})
				for len(mine) > 0 && rng.IntN(3) > 0 {
					j := rng.IntN(len(mine))
					mine[j].p.Done(mine[j].i, Success)
					mine = append(mine[:j], mine[j+1:]...)
				}
			}
			for _, h := range mine {
				h.p.Done(h.i, Success)
			}
		})
	}
	workers.Wait()
	close(stop)
	wg.Wait()
	require.Zero(t, bad.Load(), "picks not usable")
	for _, e := range all {
		require.Zero(t, s.InFlight(e), "%v", e)
	}
	require.Zero(t, s.total.Load())
}
