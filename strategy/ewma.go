package strategy

import (
	"math"
	"sync/atomic"
)

// penalty is the load of a member with requests pending and no latency
// observed yet: Finagle's PeakEwma Penalty, Long.MaxValue >> 16 ns (about
// 39 hours), high enough that such a member is drawn but rarely chosen
// while it has a request out, low enough that adding to it cannot overflow.
const penalty = float64(math.MaxInt64 >> 16)

// wrap is the range of the stamp kept in an ewmaState's word: 2³² µs,
// about 71 minutes. Gaps of half of it or more are measured on the full
// stamp instead.
const wrap = 1 << 32

// ewmaState is one member's state for [PeakEWMA]: Finagle's cost, stamp
// and pending. Finagle guards them with the member's monitor; here cost and
// stamp share one word, replaced by compare-and-swap, so that neither
// picks nor Done ever wait:
//
//	word = float32 bits of cost in ns << 32 | stamp in µs mod 2³²
//
// A float32 keeps 24 bits of the cost (7 significant digits), and the
// stamp's microseconds keep (t-stamp)/τ to a millionth of τ = 1s. The
// stamp's higher bits are in long, stored after each write of the word:
// only a gap of half the 71-minute wrap or more is measured with it, so
// the moment between the two stores does not matter. The state sits on a
// cache line of its own.
type ewmaState struct {
	word    atomic.Uint64
	long    atomic.Int64 // the stamp of the last write, in full µs
	pending inFlight
	_       [40]byte
}

func (s *ewmaState) busy() bool { return s.pending.Load() > 0 }

// unpack splits a word into cost (ns) and stamp (µs mod 2³²).
func unpack(w uint64) (cost float64, stamp uint32) {
	return float64(math.Float32frombits(uint32(w >> 32))), uint32(w)
}

// pack joins cost (ns) and stamp (µs mod 2³²) into a word.
func pack(cost float64, stamp uint32) uint64 {
	return uint64(math.Float32bits(float32(cost)))<<32 | uint64(stamp)
}

// observe is Finagle's observe(rtt) at time now (µs) with time constant tau
// (µs): the peak is taken at once, anything lower is averaged in with
// weight 1-exp(-(now-stamp)/tau). It returns the cost after. A time before
// the stamp counts as no time at all (Finagle's max(t - stamp, 0)) and
// leaves the stamp alone, so that it never goes backwards when writers
// race. When nothing would change (no time has passed, or there is no
// cost to decay and rtt is 0) the word is not written.
func (s *ewmaState) observe(rtt float64, now int64, tau float64) float64 {
	for {
		old := s.word.Load()
		cost, stamp := unpack(old)
		td := int64(int32(uint32(now) - stamp))
		if gap := now - s.long.Load(); gap >= wrap/2 {
			td = gap
		}
		next, at := cost, stamp
		switch {
		case rtt > cost:
			next = rtt
			if td > 0 {
				at = uint32(now)
			}
		case td > 0 && cost > 0:
			w := math.Exp(-float64(td) / tau)
			next, at = cost*w+rtt*(1-w), uint32(now)
		default:
			return cost // no time has passed, or 0 decays to 0
		}
		nw := pack(next, at)
		if nw == old {
			return cost
		}
		if s.word.CompareAndSwap(old, nw) {
			if at != stamp {
				s.long.Store(now)
			}
			next, _ = unpack(nw)
			return next
		}
	}
}

// load is Finagle's load(): observe(0), then Penalty+pending for a member
// with requests pending and no cost, cost·(pending+1) otherwise.
func (s *ewmaState) load(now int64, tau float64) float64 {
	cost := s.observe(0, now, tau)
	p := s.pending.Load()
	if cost == 0 && p > 0 {
		return penalty + float64(p)
	}
	return cost * float64(p+1)
}
