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
// consecutive first picks cover every usable member exactly once, however
// many goroutines pick at once.
//
// Only a request's first pick advances that counter. A retry (a pick with
// a non-empty [Tried]) takes its turn from a second counter, once per
// request, and goes to the member that far along the usable members it has
// not tried: the retries of a failing member spread evenly over the others,
// and one request's successive retries go round them in order. Were
// retries to draw from the first counter, a member that fails every request
// would take every first pick: its failed request's retry consumes the next
// value, and in a pool of two the value after that is its own again.
//
// RoundRobin ignores weights. A RoundRobin is safe for concurrent use; its
// zero value is ready to use.
type RoundRobin struct {
	next  atomic.Uint64 // first picks made by all of this strategy's pickers
	retry atomic.Uint64 // retry picks made by them
}

var _ Strategy = (*RoundRobin)(nil)

// NewRoundRobin returns a round-robin strategy.
func NewRoundRobin() *RoundRobin { return &RoundRobin{} }

// Picker returns a picker over set.Usable that shares rr's pick counters.
func (rr *RoundRobin) Picker(set *Set) Picker {
	return &rrPicker{next: &rr.next, retry: &rr.retry, all: set.All, usable: set.Usable}
}

// rrPicker is an immutable snapshot plus pointers to the strategy's
// cursors.
type rrPicker struct {
	next   *atomic.Uint64 // first picks
	retry  *atomic.Uint64 // picks with a non-empty tried set
	all    []Endpoint
	usable []int
}

// Pick implements [Picker] by the snapshot rule: a first pick takes
// usable[n % len(usable)] with n drawn from the strategy's counter. A pick
// with members in tried takes the k-th usable member not in tried, k being
// the request's retry turn modulo their number; the turn is drawn from the
// retry counter at the request's first retry and kept in tried. Retries
// thus never move the first picks of later requests. Pick returns -1 when
// every usable member is in tried or none is usable. It never blocks or
// allocates.
func (p *rrPicker) Pick(_ *http.Request, tried *Tried) int {
	usable := p.usable
	if len(usable) == 0 {
		return -1
	}
	if tried.Len() == 0 {
		return usable[(p.next.Add(1)-1)%uint64(len(usable))]
	}
	left := 0
	for _, m := range usable {
		if !tried.Has(p.all[m]) {
			left++
		}
	}
	if left == 0 {
		return -1
	}
	if tried.turn == 0 {
		tried.turn = p.retry.Add(1) // the counter's value before, plus one
	}
	k := (tried.turn - 1) % uint64(left)
	for _, m := range usable {
		if tried.Has(p.all[m]) {
			continue
		}
		if k == 0 {
			return m
		}
		k--
	}
	return -1 // not reached: k < left
}
