// Package pinned lets package lb tell a picker about a request it sends to
// a member the picker did not choose (a sticky session's backend), so that
// pickers which count their picks (least connections) count that request
// too and take its strategy.Observer Done without their counters going
// wrong. Being internal, the interface is no part of the strategy API:
// a strategy of the user's never sees such requests, neither as a pick
// nor as a Done, which keeps its Pick/Done pairs intact.
//
// nginx does the same for its sticky module: ngx_http_upstream_sticky's
// get_peer hands the chosen peer to the balancer's bookkeeping
// (peer->conns++) as if round robin had chosen it.
package pinned

// Pinner is implemented by pickers whose Observer state depends on Pick
// having been called for every Done.
type Pinner interface {
	// Pin records a request sent to the member at position i of the
	// picker's Set.All without a Pick, to be settled by one Done(i, ...)
	// like a pick. It reports whether i is a member; if not, no Done
	// must follow.
	Pin(i int) bool
}

// Pin tells picker p about a request sent to member i without a Pick. It
// reports whether a Done must follow: true if p is a Pinner that took the
// request, false if p keeps no per-pick state that Done settles, or
// cannot be told (a strategy of the user's).
func Pin(p any, i int) bool {
	pp, ok := p.(Pinner)
	if !ok {
		return false
	}
	return pp.Pin(i)
}
