package strategy

import "github.com/tinylb/lb/internal/pinned"

// The strategies that count requests in flight also count the requests a
// balancer sends without a Pick (a sticky session's backend), so that
// their next picks see that load and the Done that settles such a request
// has a count to take back. nginx's sticky module does the same: its
// get_peer hands the chosen peer to the balancer's bookkeeping
// (peer->conns++) as if the balancing method had chosen it.
var (
	_ pinned.Pinner = (*lrPicker)(nil)
	_ pinned.Pinner = (*ewmaPicker)(nil)
	_ pinned.Pinner = (*bhPicker)(nil)
)

// Pin implements [pinned.Pinner]: All[i] gets one more request in flight.
func (p *lrPicker) Pin(i int) bool {
	if i < 0 || i >= len(p.st) {
		return false
	}
	p.st[i].active.Add(1)
	return true
}

// Pin implements [pinned.Pinner]: All[i] gets one more request pending,
// whose DoneAfter observes its latency like a picked one's.
func (p *ewmaPicker) Pin(i int) bool {
	if i < 0 || i >= len(p.st) {
		return false
	}
	p.st[i].pending.Add(1)
	return true
}

// Pin implements [pinned.Pinner]: All[i] gets one more request in flight,
// counted against its bound like a picked one, though a pinned request
// may take it over the bound (the session stays where it is).
func (p *bhPicker) Pin(i int) bool {
	if i < 0 || i >= len(p.load) {
		return false
	}
	p.load[i].n.Add(1)
	p.total.Add(1)
	return true
}
