package strategy

import (
	"errors"
	"fmt"
	"math/bits"
	"sync"
)

// ErrInvalidConfig is wrapped by the error a constructor returns for a
// configuration it cannot work with, such as a negative number of choices.
var ErrInvalidConfig = errors.New("strategy: invalid configuration")

// defaultChoices is the number of members a power-of-two-choices pick
// draws: Envoy's choice_count default, and HAProxy's for balance random.
const defaultChoices = 2

// choices returns n, or the default for 0, or an error for a negative n.
func choices(n int) (int, error) {
	switch {
	case n < 0:
		return 0, fmt.Errorf("%w: Choices %d is negative", ErrInvalidConfig, n)
	case n == 0:
		return defaultChoices, nil
	}
	return n, nil
}

// draws draws usable members at random for a power-of-two-choices pick
// (Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing",
// 2001), in proportion to their weights in Set.Weights and with
// replacement, as Envoy's least_request does (least_request_lb.cc,
// unweightedHostPick). Equal weights draw uniformly; unequal ones use
// Walker's alias method in Vose's form ("A Linear Algorithm for Generating
// Random Numbers with a Given Distribution", 1991): one random value picks
// a column and tosses its biased coin, O(1) at any size, with no lock and
// no allocation.
type draws struct {
	rnd  func() uint64
	n    uint64  // the number of usable members
	cols []alias // one column per usable member; nil when all weights are equal
}

// alias is one column of an alias table: a draw that lands on column k
// takes member k if its coin (32 random bits) is below keep, and member
// other if not.
type alias struct {
	keep  uint64 // the chance of keeping k, in units of 2⁻³²; 2³² always keeps it
	other int
}

// newDraws returns draws over set's usable members, indexed in the order of
// set.Usable.
func newDraws(set *Set, rnd func() uint64) draws {
	d := draws{rnd: rnd, n: uint64(len(set.Usable))}
	equal := true
	for _, i := range set.Usable {
		if set.Weights[i] != set.Weights[set.Usable[0]] {
			equal = false
			break
		}
	}
	if !equal {
		d.cols = aliasTable(set)
	}
	return d
}

// aliasTable builds Vose's table in integers, so that it is exact: each
// member brings weight·n units, each column holds total units, and a
// member short of total is topped up from one with more than total.
func aliasTable(set *Set) []alias {
	n := uint64(len(set.Usable))
	mass := make([]uint64, n)
	var total uint64
	for k, i := range set.Usable {
		w := uint64(max(set.Weights[i], 1))
		mass[k] = w * n
		total += w
	}
	cols := make([]alias, n)
	var small, large []int
	for k := range mass {
		if mass[k] < total {
			small = append(small, k)
		} else {
			large = append(large, k)
		}
	}
	for len(small) > 0 && len(large) > 0 {
		s, l := small[len(small)-1], large[len(large)-1]
		small = small[:len(small)-1]
		hi, lo := bits.Mul64(mass[s], 1<<32)
		keep, _ := bits.Div64(hi, lo, total) // mass[s]·2³²/total; hi < total
		cols[s] = alias{keep: keep, other: l}
		mass[l] -= total - mass[s]
		if mass[l] < total {
			large = large[:len(large)-1]
			small = append(small, l)
		}
	}
	for _, k := range append(small, large...) { // exactly full
		cols[k] = alias{keep: 1 << 32, other: k}
	}
	return cols
}

// next returns the index in Set.Usable of a random member. There must be
// one. The column is (r·n)>>64, Lemire's multiply-shift, which needs no
// division; the coin is r's low 32 bits, which the column hardly depends
// on.
func (d *draws) next() int {
	r := d.rnd()
	k, _ := bits.Mul64(r, d.n)
	if d.cols == nil {
		return int(k)
	}
	c := &d.cols[k]
	if r&(1<<32-1) < c.keep {
		return int(k)
	}
	return c.other
}

// nextOther returns the index in Set.Usable of a random member other than
// first, where there is another: Finagle's P2C draws two distinct nodes
// (its Distributor picks b from n-1 and skips a). With equal weights it is
// uniform over the others; with weights it draws again, a few times,
// while the draw lands on first, and then takes a uniform other, so that
// a heavy member is not drawn twice.
func (d *draws) nextOther(first int) int {
	if d.n < 2 {
		return first
	}
	if d.cols != nil {
		for range 3 {
			if k := d.next(); k != first {
				return k
			}
		}
	}
	k, _ := bits.Mul64(d.rnd(), d.n-1)
	if int(k) >= first {
		k++
	}
	return int(k)
}

// start returns a random index in Set.Usable, where a scan of the members
// begins, so that the scans of different requests do not all favor the
// first member.
func (d *draws) start() int {
	k, _ := bits.Mul64(d.rnd(), d.n)
	return int(k)
}

// busy is implemented by per-member states that must outlive their
// member's removal while requests are in flight.
type busy interface{ busy() bool }

// memberStates keeps a strategy's per-member state, keyed by Endpoint, so
// that it survives Picker rebuilds: the grpc-go leastrequest design of
// counters shared with the pickers by pointer. A member dropped from
// Set.All keeps its state while it is busy, so that if it comes back it is
// not flooded, and the older pickers still finishing its requests update
// the state the new pickers read. The zero value is ready to use.
type memberStates[S any, P interface {
	*S
	busy
}] struct {
	mu sync.Mutex // guards m; taken only when a Picker is built
	m  map[Endpoint]P
}

// of returns the state of each member of all, in order, making the missing
// ones, and forgets the states of members no longer in all that are not
// busy.
func (ms *memberStates[S, P]) of(all []Endpoint) []P {
	out := make([]P, len(all))
	next := make(map[Endpoint]P, len(all))
	ms.mu.Lock()
	defer ms.mu.Unlock()
	for i, e := range all {
		st := next[e]
		if st == nil {
			st = ms.m[e]
		}
		if st == nil {
			st = new(S)
		}
		next[e] = st
		out[i] = st
	}
	for e, st := range ms.m {
		if _, ok := next[e]; !ok && st.busy() {
			next[e] = st
		}
	}
	ms.m = next
	return out
}

// member is one usable member as a power-of-two-choices picker sees it.
type member[P any] struct {
	st P
	e  Endpoint
	w  int // Set.Weights[i]
	i  int // position in Set.All
}

// members lists set's usable members in the order of set.Usable, with
// their states from st (indexed by position in Set.All).
func members[P any](set *Set, st []P) []member[P] {
	ms := make([]member[P], len(set.Usable))
	for k, i := range set.Usable {
		ms[k] = member[P]{st: st[i], e: set.All[i], w: set.Weights[i], i: i}
	}
	return ms
}
