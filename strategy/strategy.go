// Package strategy defines how a balancer chooses a backend for a request,
// and holds the built-in strategies: round robin, nginx's smooth weighted
// round robin, weighted least connections, a ketama consistent-hash ring,
// the same ring with bounded loads, and the power-of-two-choices
// strategies of Envoy and Finagle.
//
// The package does not know about HTTP proxying or health checking. A
// balancer describes its members to a [Strategy] as an immutable [Set]
// whenever membership, health or weights change, and gets back a [Picker]
// that it calls on every request. This is grpc-go's picker design: writers
// publish a new picker, readers never wait for writers, and per-backend state
// that must survive a rebuild (counters, smooth-weighted state) is kept by
// the Strategy and shared with its pickers by pointer.
//
// The built-in strategies follow nginx's, pick for pick, and the bounded
// one HAProxy's:
//
//   - [NewRoundRobin]: plain round robin over the usable members.
//   - [NewSmoothWeighted]: smooth weighted round robin, with effective
//     weights that drop on failure and recover pick by pick.
//   - [NewLeastConn]: weighted least connections, ties broken by the
//     smooth weighted pass.
//   - [NewConsistentHash]: a ketama ring, 160 points per weight unit, that
//     keeps each key on one member.
//   - [NewBoundedHash]: the same ring with bounded loads (HAProxy's
//     hash-balance-factor): a key stays on its member until that member
//     has c times its share of the requests in flight, and then spills to
//     the next member along the ring.
//
// Two more follow the proxies that made power of two random choices
// (Mitzenmacher 2001) the usual default, drawing two members in proportion
// to their weights and sending the request to the less loaded:
//
//   - [NewLeastRequest]: Envoy's least_request, the one with fewer requests
//     in flight, relative to its weight.
//   - [NewPeakEWMA]: Finagle's peak EWMA, the one with the lower latency
//     average times requests in flight plus one.
//
// Their picks take no lock at all, where the nginx strategies take the
// strategy's mutex.
//
// Writing a strategy means implementing [Strategy] and [Picker]; implement
// [Observer] as well when the strategy learns from outcomes, and
// [LatencyObserver] when it learns from latencies.
package strategy

import (
	"net/http"
	"time"
)

// Endpoint is a strategy's view of one backend. The balancer's backends
// implement it; comparing two Endpoints with == tells whether they are the
// same backend, so its dynamic type must be comparable (typically a
// pointer). Strategies use Endpoints as map keys to keep per-backend state
// across Sets.
type Endpoint interface {
	// Key names the endpoint: its URL in a normal form, so that every
	// spelling of one server gives one Key. The balancer's backends
	// normalize it as RFC 3986 §6.2.3 does for http and https: scheme and
	// host in lower case, no default port (80 for http, 443 for https), no
	// trailing slash; "HTTP://X:80/" and "http://x" both have the Key
	// "http://x". It is fixed for the endpoint's lifetime, so hashing
	// strategies derive ring points from it and independent balancers over
	// the same servers agree. Strategies use it as given and do not
	// normalize it again: an Endpoint of another kind should give a Key in
	// the same form.
	Key() string
	// Weight is the configured weight, at least 1.
	Weight() int
}

// Set is an immutable snapshot of the members a Picker chooses among. A Set
// and its slices must not be modified after it is handed to a Strategy.
type Set struct {
	// All lists every member in configuration order, usable or not. Hashing
	// strategies build their ring over All, so that a member going down
	// moves only its own keys.
	All []Endpoint
	// Usable holds the positions in All of the members that may take new
	// requests now, in ascending order. It may be empty.
	Usable []int
	// Weights holds the weight in effect for each member of All, in units
	// of 1/Scale of a configured weight unit. Without slow start it equals
	// Weight()*Scale; a backend ramping up after recovery has less. Every
	// entry is at least 1.
	Weights []int
	// Scale is the number of weight units per configured weight unit: 1
	// normally, more when the balancer ramps weights (slow start) and needs
	// the finer steps. Strategies that adjust weights by whole units (the
	// smooth weighted recovery of +1 per pass) adjust by Scale.
	Scale int
	// MaxFails is the passive-health failure threshold: on each failed
	// attempt the smooth weighted strategies lower a member's effective
	// weight by Weights[i]/MaxFails. Zero means failures do not lower it.
	MaxFails int
}

// Strategy builds pickers. One Strategy value serves one balancer: it may
// keep state across the pickers it builds (cursors, per-member counters).
type Strategy interface {
	// Picker returns a picker over set. The balancer calls it whenever
	// membership, health or weights change, never on the request path and
	// never concurrently with itself. The returned picker may be used
	// concurrently with pickers built earlier, which are still finishing
	// requests.
	Picker(set *Set) Picker
}

// Picker chooses a member for one request.
type Picker interface {
	// Pick returns the position in Set.All of the member chosen for r, or
	// -1 if no usable member is left once the members in tried are
	// excluded. It only ever returns positions listed in Set.Usable. It
	// must not block and should not allocate; it is called concurrently.
	// tried may be nil.
	Pick(r *http.Request, tried *Tried) int
}

// Result is the outcome of one attempt, as reported to an [Observer].
type Result uint8

const (
	// Success: the backend answered and the answer did not count as a failure.
	Success Result = iota
	// Failure: a connection error, a timeout or a status that the balancer's
	// passive health policy counts as a failure.
	Failure
	// Ignored: the attempt says nothing about the backend (the client went
	// away, or the balancer dropped the pick before sending anything).
	Ignored
)

// Observer is implemented by pickers that learn from outcomes: the smooth
// weighted pass lowers effective weight on failure; least connections
// counts requests in flight. The balancer calls Done exactly once for every
// successful Pick, on the picker that made it, when the attempt is over
// (for streams and upgraded connections, when they close).
type Observer interface {
	Done(i int, r Result)
}

// LatencyObserver is an [Observer] that also learns how long attempts took.
// For an attempt it sent, the balancer calls DoneAfter instead of Done, with
// rtt the time from the pick to the end of the attempt: to the end of the
// response body for streamed responses, to the error for failed ones. It
// still calls Done for a pick it dropped before sending anything.
type LatencyObserver interface {
	Observer
	DoneAfter(i int, r Result, rtt time.Duration)
}

// Tried is the set of members one request has already been sent to, so that
// a retry goes to a different backend. The zero value is an empty set. It
// holds a few members without allocating.
//
// A Tried also keeps the request's turn among round-robin retries, which
// [RoundRobin]'s pickers (and [ConsistentHash]'s fallback) draw on the
// request's first retry and reuse on its later ones, so that one request's
// retries go round the members in order. A Tried must therefore serve one
// request only, and not be used by two goroutines at once.
type Tried struct {
	n     int
	small [4]Endpoint
	more  []Endpoint
	turn  uint64 // the request's draw from a retry counter, plus one; 0: none yet
}

// Add records e.
func (t *Tried) Add(e Endpoint) {
	if t.n < len(t.small) {
		t.small[t.n] = e
	} else {
		t.more = append(t.more, e)
	}
	t.n++
}

// Has reports whether e was recorded. A nil *Tried holds nothing.
func (t *Tried) Has(e Endpoint) bool {
	if t == nil {
		return false
	}
	for i := 0; i < t.n && i < len(t.small); i++ {
		if t.small[i] == e {
			return true
		}
	}
	for _, m := range t.more {
		if m == e {
			return true
		}
	}
	return false
}

// Len is the number of members recorded. A nil *Tried holds nothing.
func (t *Tried) Len() int {
	if t == nil {
		return 0
	}
	return t.n
}

// Reset empties t, keeping its storage, and forgets its retry turn.
func (t *Tried) Reset() {
	clear(t.small[:])
	t.more = t.more[:0]
	t.n = 0
	t.turn = 0
}
