// Package effweight lets package lb read the effective weights that the
// smooth weighted strategies keep (nginx's effective_weight, lowered on
// failure in ngx_http_upstream_free_round_robin_peer and recovered in
// ngx_http_upstream_get_peer) without package strategy exporting them:
// they are plumbing for the balancer's Stats, not part of the strategy API.
// Being internal, the interface cannot be named outside this module.
package effweight

// Reporter is implemented by the pickers of strategies whose weights move
// with feedback. The pickers are unexported types, so the method never
// shows in package strategy's documentation.
type Reporter interface {
	// EffectiveWeight returns the effective weight of the member at
	// position i of the picker's Set.All, in units of the Set's Scale, and
	// whether i is a member of that Set.
	EffectiveWeight(i int) (int, bool)
}

// Of returns the effective weight that picker p reports for position i,
// and false if p keeps none (round robin, consistent hashing, a strategy
// of the user's) or i is not a member.
func Of(p any, i int) (int, bool) {
	r, ok := p.(Reporter)
	if !ok {
		return 0, false
	}
	return r.EffectiveWeight(i)
}
