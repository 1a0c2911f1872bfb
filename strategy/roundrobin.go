package strategy

import (
	"net/http"
	"sync/atomic"
)

// RoundRobin is plain round robin over the usable members, by the snapshot
// rule of lock-free balancers (grpc-go's round_robin picker, Caddy's
// RoundRobinSelection): the n-th pick takes Usable[n % len(Usable)], never
// the member after a down one, which would give it a double share. The pick
// counter belongs to the RoundRobin, not to its pickers, so it carries on
// across rebuilds, and because it is a single atomic counter any len(Usable)
// consecutive picks cover every usable member exactly once, however many
// goroutines pick at once.
//
// RoundRobin ignores weights. A RoundRobin is safe for concurrent use; its
// zero value is ready to use.
type RoundRobin struct {
	next atomic.Uint64 // picks made by all of this strategy's pickers
}

var _ Strategy = (*RoundRobin)(nil)

// NewRoundRobin returns a round-robin strategy.
func NewRoundRobin() *RoundRobin { return &RoundRobin{} }

// Picker returns a picker over set.Usable that shares rr's pick counter.
func (rr *RoundRobin) Picker(set *Set) Picker {
	return &rrPicker{next: &rr.next, all: set.All, usable: set.Usable}
}

// rrPicker is an immutable snapshot plus a pointer to the strategy's cursor.
type rrPicker struct {
	next   *atomic.Uint64
	all    []Endpoint
	usable []int
}

// Pick implements [Picker] by the snapshot rule: it takes
// usable[n % len(usable)] with n drawn from the strategy's counter. If that
// member is in tried it steps forward through usable to the first member
// not in tried, so a retry goes elsewhere; it returns -1 when every usable
// member is in tried or none is usable. It never blocks or allocates.
func (p *rrPicker) Pick(_ *http.Request, tried *Tried) int {
	usable := p.usable
	if len(usable) == 0 {
		return -1
	}
	i := (p.next.Add(1) - 1) % uint64(len(usable))
	if tried == nil || tried.Len() == 0 {
		return usable[i]
	}
	return p.step(i, tried)
}

// step returns the first member of usable from position i on, wrapping,
// that is not in tried, or -1.
func (p *rrPicker) step(i uint64, tried *Tried) int {
	n := uint64(len(p.usable))
	for range n {
		if m := p.usable[i]; !tried.Has(p.all[m]) {
			return m
		}
		if i++; i == n {
			i = 0
		}
	}
	return -1
}
