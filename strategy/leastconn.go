package strategy

import (
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/tinylb/lb/internal/effweight"
	"github.com/tinylb/lb/internal/pinned"
)

// LeastConn is nginx's weighted least connections
// (ngx_http_upstream_get_least_conn_peer in nginx's
// ngx_http_upstream_least_conn_module.c). It sends each request to the usable
// member with the fewest requests in flight relative to its weight, comparing
// conns(p)*w(best) < conns(best)*w(p) so that no division is needed. Members
// tied with the best one are split by the smooth weighted pass of
// [SmoothWeighted], run over the tied members only, starting at the first of
// them; the members outside the tie keep their state. With weights a1 b1 c1
// and no request finishing, the picks are a b c c b a.
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
// Each pick takes a mutex for one O(n) pass. Done uncounts the request
// with one atomic add, without the mutex, which it takes only for a
// Failure that lowers an effective weight. A LeastConn and its pickers are safe for concurrent use; the
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
	_ Strategy           = (*LeastConn)(nil)
	_ Observer           = (*lcPicker)(nil)
	_ effweight.Reporter = (*lcPicker)(nil)
	_ pinned.Pinner      = (*lcPicker)(nil)
)

// NewLeastConn returns a weighted least-connections strategy.
func NewLeastConn() *LeastConn { return &LeastConn{} }

// lcState is one member's state. The strategy's mutex guards it, except
// done, which Done adds to without the lock: the count in flight is
// picked-done, two counters so that uncounting needs no lock.
type lcState struct {
	smooth
	picked int          // requests picked
	done   atomic.Int64 // requests Done; picked-done are in flight
	gone   bool         // dropped from All, kept only for its in-flight count
}

// inFlight returns the requests in flight. A Done with nothing in flight
// is ignored: picked catches up with done. The caller holds the mutex.
func (s *lcState) inFlight() int {
	c := s.picked - int(s.done.Load())
	if c < 0 {
		s.picked -= c
		c = 0
	}
	return c
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
		p.maxFails = 0 // nginx skips failure accounting for a single peer (ngx_http_upstream_free_round_robin_peer)
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
		if _, ok := next[e]; !ok && st.inFlight() > 0 {
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
	st    *lcState
	e     Endpoint
	w     int // Weights[i]
	i     int // position in All
	added int // the ew its last smooth weighted step added; under the mutex
}

// Pick implements [Picker]: nginx's least-connections scan and the smooth
// weighted pass (ngx_http_upstream_get_peer) over the members tied with the
// best, and the count of the chosen member goes up by one, all under one
// lock.
//
// The scan and the pass are fused into one walk. Each member tied with the
// best so far gets its smooth weighted step at once; when a strictly better
// member turns up, the steps of the old tie are undone (each item remembers
// the ew it added) and the new best starts a new tie. A best that stays
// unique has its step undone at the end, since nginx runs no pass then. Every
// member outside the final tie is left exactly as it was, so the result is
// the two-pass algorithm's, in one pass when everything ties (an idle pool).
func (p *lcPicker) Pick(_ *http.Request, tried *Tried) int {
	check := tried.Len() > 0
	p.mu.Lock()
	best, top, ties, total := -1, -1, 0, 0
	var bc, bw int // conns and weight of best
	var topSt *lcState
	for k := range p.items {
		it := &p.items[k]
		if check && tried.Has(it.e) {
			continue
		}
		st := it.st
		c := st.inFlight()
		if best >= 0 {
			l, r := c*bw, bc*it.w
			if l > r {
				continue
			}
			if l == r {
				it.added = st.add(it.w, p.scale)
				total += it.added
				ties++
				if st.cw > topSt.cw {
					top, topSt = k, st
				}
				continue
			}
			p.undo(best, k, bc, bw, check, tried)
		}
		best, bc, bw = k, c, it.w
		it.added = st.add(it.w, p.scale)
		total, ties, top, topSt = it.added, 1, k, st
	}
	if best < 0 {
		p.mu.Unlock()
		return -1
	}
	if ties == 1 {
		p.items[best].unadd()
		total = 0
	}
	topSt.cw -= total
	topSt.picked++
	i := p.items[top].i
	p.mu.Unlock()
	return i
}

// undo takes back the smooth weighted steps of the members in items[from:to]
// tied with conns bc and weight bw.
func (p *lcPicker) undo(from, to, bc, bw int, check bool, tried *Tried) {
	for k := from; k < to; k++ {
		it := &p.items[k]
		if check && tried.Has(it.e) {
			continue
		}
		if it.st.inFlight()*bw == bc*it.w {
			it.unadd()
		}
	}
}

// unadd takes back the smooth weighted step that added it.added: cw loses it,
// and ew, which the step may have raised, goes back to it.
func (it *lcItem) unadd() {
	it.st.cw -= it.added
	it.st.ew = it.added
}

// EffectiveWeight implements [effweight.Reporter]: the ew of All[i], which
// its tie breaks use, in units of the Set's Scale. It is on the picker, an
// unexported type, so that the balancer's Stats can read it without the
// strategy's API showing it.
func (p *lcPicker) EffectiveWeight(i int) (int, bool) {
	if i < 0 || i >= len(p.st) {
		return 0, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st[i].ew, true
}

// Pin implements [pinned.Pinner]: a request the balancer sent to All[i]
// without a Pick (a sticky session's) is counted in flight like a pick,
// so that the next Picks see its load and its Done uncounts it.
func (p *lcPicker) Pin(i int) bool {
	if i < 0 || i >= len(p.st) {
		return false
	}
	p.mu.Lock()
	p.st[i].picked++
	p.mu.Unlock()
	return true
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
	st.done.Add(1)
	if d > 0 {
		p.mu.Lock()
		st.fail(d)
		p.mu.Unlock()
	}
}
