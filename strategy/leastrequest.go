package strategy

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
)

// LeastRequestConfig configures [NewLeastRequest]. The zero value gives
// Envoy's defaults.
type LeastRequestConfig struct {
	// Choices is the number of members drawn per pick, Envoy's
	// choice_count: 0 means 2. 1 makes the strategy weighted random.
	Choices int
	// ActiveRequestBias is Envoy's active_request_bias: a member's
	// effective weight is w/(active+1)^bias. nil means 1.0, Envoy's
	// default; new(0.0) compares weights alone. It must not be negative.
	ActiveRequestBias *float64
	// Rand returns uniformly random 64-bit values. It is called
	// concurrently unless the balancer picks from one goroutine. nil means
	// math/rand/v2's Uint64, which takes no lock.
	Rand func() uint64
}

// LeastRequest is Envoy's least_request load balancer (least_request_lb.cc):
// power of two random choices. Each pick draws Choices members (2 by
// default) at random, with replacement, and keeps the first draw unless a
// later one is less loaded:
//
//   - if the two have the same weight, the one with strictly fewer requests
//     in flight wins, and a tie keeps the first draw (Envoy's
//     unweightedHostPick). With 4 members in flight 5, 2, 7, 2 the draws
//     (0,1) pick 1, (1,3) pick 1 and (2,2) pick 2;
//   - if their weights differ, the one with the higher effective weight
//     w/(active+1)^bias wins, ties again keeping the first.
//
// Draws follow Set.Weights, so a member slow-starting after recovery is
// drawn less often. Here LeastRequest differs from Envoy: with unequal
// weights Envoy does not draw at all but runs its EDF scheduler over the
// effective weights, which takes a lock per worker thread; LeastRequest
// keeps the lock-free draws and compares the same effective weights. The
// shares of idle members follow the weights in both.
//
// The in-flight counts belong to the LeastRequest and outlive its pickers:
// a Pick counts the request with one atomic add, and the picker's Done (it
// is an [Observer]) uncounts it, whatever the [Result]. Concurrent picks
// may see the same counts and choose the same member, which the random
// draws spread out. A member dropped from Set.All keeps its count while it
// has requests in flight. Picks take no lock and do not allocate.
//
// A retry skips the members in its [Tried]; when every draw is tried, it
// scans the untried usable members for the least loaded. A LeastRequest and
// its pickers are safe for concurrent use.
type LeastRequest struct {
	choices int
	bias    float64
	rnd     func() uint64
	states  memberStates[lrState, *lrState]
}

var (
	_ Strategy = (*LeastRequest)(nil)
	_ Observer = (*lrPicker)(nil)
)

// NewLeastRequest returns Envoy's least_request strategy as cfg sets it. It
// fails, with an error wrapping [ErrInvalidConfig], for a negative Choices
// or a negative or NaN ActiveRequestBias.
func NewLeastRequest(cfg LeastRequestConfig) (*LeastRequest, error) {
	n, err := choices(cfg.Choices)
	if err != nil {
		return nil, fmt.Errorf("least request: %w", err)
	}
	lr := &LeastRequest{choices: n, bias: 1, rnd: cfg.Rand}
	if b := cfg.ActiveRequestBias; b != nil {
		if !(*b >= 0) || math.IsInf(*b, 1) {
			return nil, fmt.Errorf("least request: %w: ActiveRequestBias %v is not a finite number ≥ 0", ErrInvalidConfig, *b)
		}
		lr.bias = *b
	}
	if lr.rnd == nil {
		lr.rnd = rand.Uint64
	}
	return lr, nil
}

// lrState is one member's count of requests in flight, alone on its cache
// line so that picks of different members do not contend.
type lrState struct {
	active inFlight
	_      [56]byte
}

func (s *lrState) busy() bool { return s.active.Load() > 0 }

// inFlight counts requests in flight. A Done with nothing in flight is
// ignored, so the count never goes below 0.
type inFlight struct{ atomic.Int64 }

// dec uncounts one request, if any is counted.
func (c *inFlight) dec() {
	for {
		v := c.Load()
		if v <= 0 || c.CompareAndSwap(v, v-1) {
			return
		}
	}
}

// Picker returns a picker over set that shares lr's in-flight counts.
func (lr *LeastRequest) Picker(set *Set) Picker {
	st := lr.states.of(set.All)
	return &lrPicker{
		draws:   newDraws(set, lr.rnd),
		members: members(set, st),
		st:      st,
		choices: lr.choices,
		bias:    lr.bias,
	}
}

// lrPicker is one Set's view of the shared counts.
type lrPicker struct {
	draws
	members []member[*lrState] // the usable members, in the order of Set.Usable
	st      []*lrState         // st[i] is the state of All[i]
	choices int
	bias    float64
}

// Pick implements [Picker]: Choices draws, the least loaded wins, and its
// count goes up by one.
func (p *lrPicker) Pick(_ *http.Request, tried *Tried) int {
	if len(p.members) == 0 {
		return -1
	}
	check := tried.Len() > 0
	best := -1
	var ba int64 // in flight on best
	for range p.choices {
		k := p.next()
		m := &p.members[k]
		if check && tried.Has(m.e) {
			continue
		}
		a := m.st.active.Load()
		if best < 0 || p.better(m.w, a, p.members[best].w, ba) {
			best, ba = k, a
		}
	}
	if best < 0 {
		if best = p.scan(tried); best < 0 {
			return -1
		}
	}
	m := &p.members[best]
	m.st.active.Add(1)
	return m.i
}

// scan returns the index in members of the least loaded member not in
// tried, starting at a random member and keeping the first of a tie, or -1
// if every member is tried.
func (p *lrPicker) scan(tried *Tried) int {
	best, n := -1, len(p.members)
	var ba int64
	for j, s := 0, p.start(); j < n; j++ {
		k := (s + j) % n
		m := &p.members[k]
		if tried.Has(m.e) {
			continue
		}
		a := m.st.active.Load()
		if best < 0 || p.better(m.w, a, p.members[best].w, ba) {
			best, ba = k, a
		}
	}
	return best
}

// better reports whether a member of weight w with a requests in flight
// replaces the candidate of weight bw with ba in flight: strictly fewer
// requests at equal weights (unweightedHostPick), a strictly higher
// effective weight w/(a+1)^bias otherwise.
func (p *lrPicker) better(w int, a int64, bw int, ba int64) bool {
	if w == bw {
		return a < ba
	}
	switch p.bias {
	case 1: // w/(a+1) > bw/(ba+1), without division
		return float64(w)*float64(ba+1) > float64(bw)*float64(a+1)
	case 0:
		return w > bw
	}
	return effectiveWeight(w, a, p.bias) > effectiveWeight(bw, ba, p.bias)
}

// effectiveWeight is Envoy's least_request weight of a host of weight w
// with active requests in flight: w/(active+1)^bias, with the cases Envoy
// computes without pow (bias 1, and 0 for plain weights). w=2, active=4
// gives 0.4 at bias 1, 0.894 at 0.5 and 2 at 0; w=100, active=9 gives 10
// at bias 1 and 1 at 2.
func effectiveWeight(w int, active int64, bias float64) float64 {
	switch bias {
	case 1:
		return float64(w) / float64(active+1)
	case 0:
		return float64(w)
	case 0.5:
		return float64(w) / math.Sqrt(float64(active+1))
	}
	return float64(w) / math.Pow(float64(active+1), bias)
}

// Done implements [Observer]: it uncounts the request.
func (p *lrPicker) Done(i int, _ Result) {
	if i >= 0 && i < len(p.st) {
		p.st[i].active.dec()
	}
}
