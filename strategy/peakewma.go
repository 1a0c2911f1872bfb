package strategy

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"
)

// PeakEWMAConfig configures [NewPeakEWMA]. The zero value gives Finagle's
// defaults.
type PeakEWMAConfig struct {
	// Choices is the number of members drawn per pick: 0 means 2.
	Choices int
	// Decay is the time constant τ of the moving average: a latency
	// observed Decay ago weighs 1/e of one observed now. 0 means 10s, as
	// in Finagle and linkerd2-proxy.
	Decay time.Duration
	// Rand returns uniformly random 64-bit values. It is called
	// concurrently unless the balancer picks from one goroutine. nil means
	// math/rand/v2's Uint64, which takes no lock.
	Rand func() uint64
	// Now returns the current time in nanoseconds on any scale that does
	// not go backwards; a simulator passes its simulated clock. nil means
	// the monotonic clock.
	Now func() int64
}

// PeakEWMA is Finagle's peak exponentially weighted moving average
// (finagle-core's PeakEwma.scala, the balancer linkerd made known in
// "Beyond Round Robin", 2016): power of two random choices on each
// member's load, the lower load winning and a tie keeping the first draw.
// A member's load is its latency average times its requests in flight plus
// one, so a member that answers slowly or has many requests queued gets
// fewer new ones, and reacts within a request, not a decay time.
//
// Per member it keeps cost (ns), stamp and pending. When a request ends
// after rtt at time t, pending goes down by one and cost is observed:
//
//	w    = exp(-(t-stamp)/τ)
//	cost = rtt                    if rtt > cost (the peak is taken at once)
//	cost = cost·w + rtt·(1-w)     otherwise
//	stamp = t
//
// load() first observes a latency of 0, so that reading a load decays it,
// then is Penalty+pending if cost is 0 with requests pending (an unknown
// member is tried once, not flooded), and cost·(pending+1) otherwise.
// Penalty is (2⁶³-1)>>16 ns, Finagle's. Failures end requests too, and
// their latencies count like any other.
//
// The latency of a request comes from the balancer, through the picker's
// DoneAfter (it is a [LatencyObserver]); a Done without a latency only
// ends the request. Draws follow Set.Weights as [LeastRequest]'s do, but
// the draws after the first differ from it, as Finagle's two draws do:
// with replacement (Envoy's rule, which LeastRequest keeps), a slow member
// of n is compared with itself on 1/n² of the picks and gets them, which
// shows in the latency beyond p99. The loads compared are not divided by
// the weights, as in Finagle, whose P2C ignores them.
//
// The state of each member outlives the pickers and, while requests are in
// flight, the member's removal. Cost and stamp share one 64-bit word,
// updated by compare-and-swap: cost as a float32 (7 significant digits),
// stamp in microseconds modulo 2³² (71 minutes), with the full stamp kept
// aside for longer gaps. Picks and Done take no lock and do not allocate.
// A retry skips the members in its [Tried]; when every draw is tried, it
// scans the untried usable members for the lowest load.
type PeakEWMA struct {
	choices int
	tau     float64 // Decay in microseconds
	rnd     func() uint64
	now     func() int64
	states  memberStates[ewmaState, *ewmaState]
}

var (
	_ Strategy        = (*PeakEWMA)(nil)
	_ LatencyObserver = (*ewmaPicker)(nil)
)

// defaultDecay is Finagle's and linkerd2-proxy's decay time.
const defaultDecay = 10 * time.Second

// NewPeakEWMA returns Finagle's peak EWMA strategy as cfg sets it. It
// fails, with an error wrapping [ErrInvalidConfig], for a negative Choices
// or Decay.
func NewPeakEWMA(cfg PeakEWMAConfig) (*PeakEWMA, error) {
	n, err := choices(cfg.Choices)
	if err != nil {
		return nil, fmt.Errorf("peak EWMA: %w", err)
	}
	decay := cfg.Decay
	switch {
	case decay < 0:
		return nil, fmt.Errorf("peak EWMA: %w: Decay %v is negative", ErrInvalidConfig, decay)
	case decay == 0:
		decay = defaultDecay
	}
	pe := &PeakEWMA{choices: n, tau: float64(decay) / 1e3, rnd: cfg.Rand, now: cfg.Now}
	if pe.rnd == nil {
		pe.rnd = rand.Uint64
	}
	if pe.now == nil {
		epoch := time.Now()
		pe.now = func() int64 { return int64(time.Since(epoch)) }
	}
	return pe, nil
}

// Picker returns a picker over set that shares pe's per-member state.
func (pe *PeakEWMA) Picker(set *Set) Picker {
	st := pe.states.of(set.All)
	return &ewmaPicker{
		draws:   newDraws(set, pe.rnd),
		members: members(set, st),
		st:      st,
		choices: pe.choices,
		tau:     pe.tau,
		now:     pe.now,
	}
}

// ewmaPicker is one Set's view of the shared state.
type ewmaPicker struct {
	draws
	members []member[*ewmaState] // the usable members, in the order of Set.Usable
	st      []*ewmaState         // st[i] is the state of All[i]
	choices int
	tau     float64
	now     func() int64
}

// micros returns the time in microseconds.
func (p *ewmaPicker) micros() int64 { return p.now() / 1e3 }

// Pick implements [Picker]: Choices draws, the lowest load wins, and its
// pending count goes up by one.
func (p *ewmaPicker) Pick(_ *http.Request, tried *Tried) int {
	if len(p.members) == 0 {
		return -1
	}
	check := tried.Len() > 0
	now := p.micros()
	best := -1
	var bl float64
	first := -1
	for range p.choices {
		var k int
		if first < 0 {
			k = p.next()
			first = k
		} else {
			k = p.nextOther(first)
		}
		m := &p.members[k]
		if check && tried.Has(m.e) {
			continue
		}
		if l := m.st.load(now, p.tau); best < 0 || l < bl {
			best, bl = k, l
		}
	}
	if best < 0 {
		if best = p.scan(tried, now); best < 0 {
			return -1
		}
	}
	m := &p.members[best]
	m.st.pending.Add(1)
	return m.i
}

// scan returns the index in members of the member with the lowest load
// not in tried, starting at a random member and keeping the first of a
// tie, or -1 if every member is tried.
func (p *ewmaPicker) scan(tried *Tried, now int64) int {
	best, n := -1, len(p.members)
	var bl float64
	for j, s := 0, p.start(); j < n; j++ {
		k := (s + j) % n
		m := &p.members[k]
		if tried.Has(m.e) {
			continue
		}
		if l := m.st.load(now, p.tau); best < 0 || l < bl {
			best, bl = k, l
		}
	}
	return best
}

// Done implements [Observer]: it ends the request without a latency, for a
// pick the balancer dropped before sending anything.
func (p *ewmaPicker) Done(i int, _ Result) {
	if i >= 0 && i < len(p.st) {
		p.st[i].pending.dec()
	}
}

// DoneAfter implements [LatencyObserver]: it ends the request and observes
// its latency, whatever the [Result], as Finagle's end() does.
func (p *ewmaPicker) DoneAfter(i int, _ Result, rtt time.Duration) {
	if i < 0 || i >= len(p.st) {
		return
	}
	st := p.st[i]
	st.pending.dec()
	st.observe(float64(max(rtt, 0)), p.micros(), p.tau)
}
