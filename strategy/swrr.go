package strategy

import (
	"net/http"
	"sync"

	"github.com/tinylb/lb/internal/effweight"
	"github.com/tinylb/lb/internal/pinned"
)

// SmoothWeighted is nginx's smooth weighted round robin
// (ngx_http_upstream_get_peer in nginx's ngx_http_upstream_round_robin.c).
// Every member has a current weight cw, starting at 0, and an effective
// weight ew, starting at its weight. Each pick runs one pass over the usable
// members not yet tried by the request, in configuration order: every one
// adds ew to its cw (and then, if ew is below its weight, ew recovers by one
// unit, Set.Scale); the first member with the highest cw wins and gives back
// the pass's total. With weights a5 b1 c1 the picks are a a b a c a a, and
// every run of picks as long as the weight sum gives each member exactly its
// weight.
//
// The picker is an [Observer]: a [Failure] lowers the member's ew by
// Weights[i]/MaxFails (integer division, not below 0) when Set.MaxFails is
// positive and the Set has more than one member, as nginx does; the ew then
// recovers a unit per pass. Weights are taken from Set.Weights, so a member
// in slow start gets its reduced share.
//
// The cw and ew of each member belong to the SmoothWeighted and are shared by
// all its pickers: a member that goes down and comes back finds them as it
// left them. A member dropped from Set.All loses its state; if it is added
// again it starts afresh. When a member's weight changes (a new configured
// weight, or a step of slow start), its ew moves by as much, within 0 and
// the new weight: a member at full strength takes its new share at once,
// and one recovering from failures keeps its deficit. If Set.Scale changes,
// every cw and ew is rescaled with it.
//
// Each pick takes a mutex for one O(n) pass, which is cheap for up to a few
// hundred members. A SmoothWeighted and its pickers are safe for concurrent
// use; the zero value is ready to use.
type SmoothWeighted struct {
	// mu guards state, and the cw and ew of every member state reachable
	// from this strategy: those in state and those still held by older
	// pickers.
	mu sync.Mutex
	// state maps each member of the last Set to its smooth-weighted state.
	state map[Endpoint]*smooth
	scale int // the last Set's Scale
}

var (
	_ Strategy           = (*SmoothWeighted)(nil)
	_ Observer           = (*swrrPicker)(nil)
	_ effweight.Reporter = (*swrrPicker)(nil)
	_ pinned.Pinner      = (*swrrPicker)(nil)
)

// NewSmoothWeighted returns a smooth weighted round-robin strategy.
func NewSmoothWeighted() *SmoothWeighted { return &SmoothWeighted{} }

// Picker returns a picker over set that shares s's per-member state.
func (s *SmoothWeighted) Picker(set *Set) Picker {
	p := &swrrPicker{
		mu:       &s.mu,
		st:       make([]*smooth, len(set.All)),
		weights:  set.Weights,
		scale:    scale(set),
		maxFails: set.MaxFails,
		items:    make([]swrrItem, 0, len(set.Usable)),
	}
	if len(set.All) < 2 {
		p.maxFails = 0 // nginx skips failure accounting for a single peer (ngx_http_upstream_free_round_robin_peer)
	}
	next := make(map[Endpoint]*smooth, len(set.All))
	s.mu.Lock()
	for _, st := range s.state {
		st.rescale(s.scale, p.scale)
	}
	s.scale = p.scale
	for i, e := range set.All {
		st := next[e]
		if st == nil {
			st = s.state[e]
		}
		if st == nil {
			st = &smooth{ew: set.Weights[i], w: set.Weights[i]}
		}
		st.reweight(set.Weights[i])
		next[e] = st
		p.st[i] = st
	}
	s.state = next
	s.mu.Unlock()
	for _, i := range set.Usable {
		p.items = append(p.items, swrrItem{st: p.st[i], e: set.All[i], w: set.Weights[i], i: i})
	}
	return p
}

// swrrPicker is one Set's view of the shared smooth-weighted state.
type swrrPicker struct {
	mu       *sync.Mutex // the strategy's; guards every *smooth
	st       []*smooth   // st[i] is the state of All[i]
	weights  []int
	scale    int
	maxFails int
	items    []swrrItem // the usable members, in order
}

// swrrItem is one usable member, laid out for the pass.
type swrrItem struct {
	st *smooth
	e  Endpoint
	w  int // Weights[i]
	i  int // position in All
}

// Pick implements [Picker]: one pass of ngx_http_upstream_get_peer over the
// usable members not in tried.
func (p *swrrPicker) Pick(_ *http.Request, tried *Tried) int {
	check := tried.Len() > 0
	p.mu.Lock()
	var best *smooth
	bi, total := -1, 0
	for k := range p.items {
		it := &p.items[k]
		if check && tried.Has(it.e) {
			continue
		}
		total += it.st.add(it.w, p.scale)
		if best == nil || it.st.cw > best.cw {
			best, bi = it.st, it.i
		}
	}
	if best != nil {
		best.cw -= total
	}
	p.mu.Unlock()
	return bi
}

// Pin implements [pinned.Pinner]: a request the balancer sent to All[i]
// without a Pick (a sticky session's) leaves the rotation as it is, as
// nginx's sticky module skips ngx_http_upstream_get_peer, but its Done
// still lowers the effective weight on failure.
func (p *swrrPicker) Pin(i int) bool { return i >= 0 && i < len(p.st) }

// Done implements [Observer]: a Failure lowers the member's effective weight
// by Weights[i]/MaxFails; other results change nothing.
func (p *swrrPicker) Done(i int, r Result) {
	if r != Failure || p.maxFails <= 0 || i < 0 || i >= len(p.st) {
		return
	}
	d := p.weights[i] / p.maxFails
	if d == 0 {
		return // as in nginx, w / max_fails can be 0, and then there is no penalty
	}
	p.mu.Lock()
	p.st[i].fail(d)
	p.mu.Unlock()
}

// EffectiveWeight implements [effweight.Reporter]: the ew of All[i], in
// units of the Set's Scale. It is on the picker, an unexported type, so that
// the balancer's Stats can read it without the strategy's API showing it.
func (p *swrrPicker) EffectiveWeight(i int) (int, bool) {
	if i < 0 || i >= len(p.st) {
		return 0, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st[i].ew, true
}

// smooth is one member's state in the smooth weighted pass. The mutex of the
// strategy that owns it guards it.
type smooth struct {
	cw int // current weight
	ew int // effective weight, in [0, w]
	w  int // the weight of the last Set
}

// add is the first step of the smooth weighted pass for a member of weight w:
// cw += ew, then ew recovers by one unit (scale) if it is below w. It returns
// the ew that was added, to be summed into the pass's total.
func (s *smooth) add(w, scale int) int {
	ew := s.ew
	s.cw += ew
	if ew < w {
		s.ew = min(ew+scale, w)
	}
	return ew
}

// fail lowers ew by d, not below 0.
func (s *smooth) fail(d int) { s.ew = max(s.ew-d, 0) }

// reweight moves ew by the change from the last weight to w, keeping it
// within [0, w]: a raise adds to ew, a cut clamps it.
func (s *smooth) reweight(w int) {
	if w > s.w {
		s.ew += w - s.w
	}
	s.ew = min(s.ew, w)
	s.w = w
}

// rescale converts cw, ew and w from units of 1/from to units of 1/to of a
// weight unit. A from of 0 (no Set yet) leaves them alone.
func (s *smooth) rescale(from, to int) {
	if from != 0 && from != to {
		s.cw = s.cw * to / from
		s.ew = s.ew * to / from
		s.w = s.w * to / from
	}
}

// scale returns set.Scale, or 1 if it is unset.
func scale(set *Set) int { return max(set.Scale, 1) }
