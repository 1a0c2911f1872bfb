package strategy

import (
	"net/http"
	"sync"
)

// LeastConn is nginx's weighted least connections
// (ngx_http_upstream_get_least_conn_peer, algorithms.md §3). It sends each
// request to the usable member with the fewest requests in flight relative
// to its weight, comparing conns(p)*w(best) < conns(best)*w(p) so that no
// division is needed. Members tied with the best one are split by the smooth
// weighted pass of [SmoothWeighted], run over the tied members only,
// starting at the first of them; the members outside the tie keep their
// state. With weights a1 b1 c1 and no request finishing, the picks are
// a b c c b a.
//
// The in-flight counts belong to the LeastConn and outlive its pickers: a
// Pick counts the request, under the same lock as the choice, so a burst of
// concurrent picks spreads out instead of piling onto the member that looked
// idlest; the picker's Done (it is an [Observer]) uncounts it, whatever the
// [Result]. As in SmoothWeighted, a [Failure] lowers the member's effective
// weight when Set.MaxFails is positive, and weight and Scale changes move
// it. Weights are taken from Set.Weights.
//
// A member dropped from Set.All keeps its in-flight count while it has
// requests in flight, so that if it is added back it is not flooded; its
// smooth-weighted state starts afresh. The smooth-weighted state is separate
// from any SmoothWeighted's.
//
// Each pick takes a mutex for one O(n) pass, and Done takes it to uncount
// the request. A LeastConn and its pickers are safe for concurrent use; the
// zero value is ready to use.
type LeastConn struct {
	// mu guards state, and every member state reachable from this
	// strategy: those in state and those still held by older pickers.
	mu sync.Mutex
	// state maps each member of the last Set, and each member dropped
	// since with requests still in flight, to its state.
	state map[Endpoint]*lcState
	scale int // the last Set's Scale
}

var (
	_ Strategy = (*LeastConn)(nil)
	_ Observer = (*lcPicker)(nil)
)

// NewLeastConn returns a weighted least-connections strategy.
func NewLeastConn() *LeastConn { return &LeastConn{} }

// lcState is one member's state. The strategy's mutex guards it.
type lcState struct {
	smooth
	conns int  // requests in flight: picked and not yet Done, never below 0
	gone  bool // dropped from All, kept only for its in-flight count
}

// Picker returns a picker over set that shares lc's per-member state.
func (lc *LeastConn) Picker(set *Set) Picker {
	p := &lcPicker{
		mu:       &lc.mu,
		st:       make([]*lcState, len(set.All)),
		weights:  set.Weights,
		scale:    scale(set),
		maxFails: set.MaxFails,
		items:    make([]lcItem, 0, len(set.Usable)),
	}
	if len(set.All) < 2 {
		p.maxFails = 0 // §1: a single-peer group skips failure accounting
	}
	next := make(map[Endpoint]*lcState, len(set.All))
	lc.mu.Lock()
	for _, st := range lc.state {
		st.rescale(lc.scale, p.scale)
	}
	lc.scale = p.scale
	for i, e := range set.All {
		st := next[e]
		if st == nil {
			st = lc.state[e]
		}
		switch {
		case st == nil:
			st = &lcState{smooth: smooth{ew: set.Weights[i], w: set.Weights[i]}}
		case st.gone: // back after being dropped: a new member but for conns
			st.smooth = smooth{ew: set.Weights[i], w: set.Weights[i]}
			st.gone = false
		}
		st.reweight(set.Weights[i])
		next[e] = st
		p.st[i] = st
	}
	for e, st := range lc.state {
		if _, ok := next[e]; !ok && st.conns > 0 {
			st.gone = true
			next[e] = st
		}
	}
	lc.state = next
	lc.mu.Unlock()
	for _, i := range set.Usable {
		p.items = append(p.items, lcItem{st: p.st[i], e: set.All[i], w: set.Weights[i], i: i})
	}
	return p
}

// EffectiveWeight returns the effective weight ew of e, which its tie
// breaks use, in the units of the last Set's Scale, and whether e is a
// member of that Set.
func (lc *LeastConn) EffectiveWeight(e Endpoint) (int, bool) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if st, ok := lc.state[e]; ok && !st.gone {
		return st.ew, true
	}
	return 0, false
}

// lcPicker is one Set's view of the shared least-connections state.
type lcPicker struct {
	mu       *sync.Mutex // the strategy's; guards every *lcState
	st       []*lcState  // st[i] is the state of All[i]
	weights  []int
	scale    int
	maxFails int
	items    []lcItem // the usable members, in order
}

// lcItem is one usable member, laid out for the scan.
type lcItem struct {
	st *lcState
	e  Endpoint
	w  int // Weights[i]
	i  int // position in All
}

// Pick implements [Picker]: the §3 scan, then the §1 pass over the tie if
// there is one, and the count of the chosen member goes up by one, all
// under one lock.
func (p *lcPicker) Pick(_ *http.Request, tried *Tried) int {
	check := tried.Len() > 0
	p.mu.Lock()
	// best is the first member with the least conns/w; many reports
	// whether another member has the same ratio.
	best, many := -1, false
	for k := range p.items {
		it := &p.items[k]
		if check && tried.Has(it.e) {
			continue
		}
		if best < 0 {
			best = k
			continue
		}
		b := &p.items[best]
		l, r := it.st.conns*b.w, b.st.conns*it.w
		if l < r {
			best, many = k, false
		} else if l == r {
			many = true
		}
	}
	if best < 0 {
		p.mu.Unlock()
		return -1
	}
	total := 0
	if many {
		// The §1 pass over the members tied with best, from best on;
		// a member tied with the first best is tied with any later one.
		for k := best; k < len(p.items); k++ {
			it := &p.items[k]
			if check && tried.Has(it.e) {
				continue
			}
			b := &p.items[best]
			if it.st.conns*b.w != b.st.conns*it.w {
				continue
			}
			total += it.st.add(it.w, p.scale)
			if it.st.cw > b.st.cw {
				best = k
			}
		}
	}
	b := &p.items[best]
	b.st.cw -= total
	b.st.conns++
	p.mu.Unlock()
	return b.i
}

// Done implements [Observer]: it uncounts the request (a Done with nothing
// in flight is ignored), and a Failure also lowers the member's effective
// weight by Weights[i]/MaxFails.
func (p *lcPicker) Done(i int, r Result) {
	if i < 0 || i >= len(p.st) {
		return
	}
	d := 0
	if r == Failure && p.maxFails > 0 {
		d = p.weights[i] / p.maxFails
	}
	st := p.st[i]
	p.mu.Lock()
	if st.conns > 0 {
		st.conns--
	}
	if d > 0 {
		st.fail(d)
	}
	p.mu.Unlock()
}
