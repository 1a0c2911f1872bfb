package strategy

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"net/http"
	"sync"
	"sync/atomic"
)

// ErrInvalidBalanceFactor is wrapped by the error [BoundedHash.Validate]
// returns for a balance factor that is not a finite number of at least 1.
var ErrInvalidBalanceFactor = errors.New("strategy: invalid balance factor")

// factorUnit is the resolution of the balance factor: c is used in steps
// of 1/factorUnit, so that 1.1 is exactly 11000/10000 and the capacities
// come out as HAProxy's integer percentages give them, with no
// floating-point rounding ((9+1)*1.1 is 11.000000000000002 in float64).
const factorUnit = 10_000

// maxBalanceFactor bounds c. Above it the bound never binds in practice;
// the cap keeps the slot arithmetic within 64 bits.
const maxBalanceFactor = 1_000_000

// BoundedHash is consistent hashing with bounded loads (Mirrokni, Thorup
// and Zadimoghaddam, "Consistent Hashing with Bounded Loads", SODA 2018,
// arXiv:1608.01350) on the ring of [ConsistentHash], with the capacities of
// HAProxy's hash-balance-factor (chash_server_is_eligible in HAProxy's
// src/lb_chash.c), counting requests in flight.
//
// A request's key picks a point on the ring exactly as in ConsistentHash
// (same points, same key hash, same walk past members that are not usable
// or that the request has tried). The member found there takes the request
// only if it has room: with T requests in flight on the usable members,
// the request makes T+1 and the usable members share
//
//	tot = ⌈(T+1)·c⌉
//
// slots by weight, member s getting
//
//	slots(s) = w(s)·⌊tot/W⌋ + ⌊(cum(s)+w(s))·rem/W⌋ − ⌊cum(s)·rem/W⌋, at least 1,
//
// where w(s) is its weight from Set.Weights (so slow start lowers it), W
// their total, rem = tot mod W and cum(s) the total weight of the usable
// members before s in Set.All. A member is eligible while its requests in
// flight are fewer than its slots; otherwise the walk goes on clockwise to
// the next member not seen yet, and the request goes to the first one that
// is eligible. No member is then taken past ⌈c·(T+1)·w(s)/W⌉ requests, so
// with equal weights none carries more than ⌈c × the average⌉; a hot key
// spills over to the members after its own on the ring, and comes back
// as its load falls. Because the slots sum to at least T+1, some usable
// member always has room; only when the request has tried every member
// with room does it go to the first member on its walk regardless of load.
//
// While the load is low no member is full, and every key goes where
// ConsistentHash sends it: one request at a time, BoundedHash and
// ConsistentHash over the same members pick alike, and so do independent
// balancers over the same URLs. Under load the choice depends on this
// balancer's own counts, which is the point: keys move only as far as the
// bound requires.
//
// c is the balance factor, 1.25 for HAProxy's hash-balance-factor 125; c
// is used to 4 decimal places. Smaller values balance more tightly and move
// more keys: at 1 every member is held to its exact share, rounded up. A c
// below 1 or NaN cannot be met and works as 1, and a c above 10^6 (+Inf
// included) works as 10^6, in effect no bound; [BoundedHash.Validate]
// reports both, and package lb's New refuses them.
//
// The empty-key cases are ConsistentHash's: with a nil key func, a key of
// "", or a Set of fewer than two members, requests go round robin over the
// usable members and are counted, but not bounded.
//
// The in-flight counts belong to the BoundedHash and outlive its pickers,
// keyed by Endpoint as in [LeastConn]: Pick counts the request, the
// picker's Done (it is an [Observer]) uncounts it whatever the [Result]. A
// member dropped from Set.All keeps its count while it has requests in
// flight, but only usable members count towards T.
//
// Pick takes no lock and does not allocate. It reads the total in flight
// from one shared counter, less the counts of the members that are not
// usable, and claims a slot with a compare-and-swap on the member's count,
// so a member's count never passes the slots computed from the T the pick
// read; concurrent picks may read a T that is a few requests stale. A
// BoundedHash and its pickers are safe for concurrent use.
type BoundedHash struct {
	ch     ConsistentHash // the ring and the round-robin fallback
	c      float64        // as given, for Validate
	factor uint64         // c in units of 1/factorUnit, clamped to [1, maxBalanceFactor]

	// total is the number of requests in flight on every member state
	// the strategy has handed out, usable or not, current or dropped.
	total atomic.Int64

	mu    sync.Mutex           // guards state; Picker only
	state map[Endpoint]*bhLoad // members of the last Set, and dropped members still busy
}

var (
	_ Strategy = (*BoundedHash)(nil)
	_ Observer = (*bhPicker)(nil)
)

// NewBoundedHash returns a consistent-hash strategy with bounded loads and
// balance factor c (at least 1; HAProxy suggests 1.25 to 2) that hashes the
// key that key returns for each request. It never fails: see
// [BoundedHash] for what becomes of a c out of range, and Validate to
// reject one.
func NewBoundedHash(key func(*http.Request) string, c float64) *BoundedHash {
	b := &BoundedHash{c: c, factor: factorOf(c)}
	b.ch.key = key
	return b
}

// factorOf returns c in units of 1/factorUnit, clamped to [1,
// maxBalanceFactor]; NaN is taken as 1.
func factorOf(c float64) uint64 {
	switch {
	case !(c >= 1): // NaN too
		return factorUnit
	case c >= maxBalanceFactor:
		return maxBalanceFactor * factorUnit
	}
	return uint64(math.Round(c * factorUnit))
}

// Validate returns an error wrapping [ErrInvalidBalanceFactor] if c is not
// a finite number of at least 1.
func (b *BoundedHash) Validate() error {
	if b.c >= 1 && !math.IsInf(b.c, 1) {
		return nil
	}
	return fmt.Errorf("%w: BoundedHash with c = %v: want a finite number ≥ 1, such as 1.25", ErrInvalidBalanceFactor, b.c)
}

// InFlight returns the requests in flight on e as the bound counts them: 0
// for a member it does not know.
func (b *BoundedHash) InFlight(e Endpoint) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if st := b.state[e]; st != nil {
		return int(st.n.Load())
	}
	return 0
}

// bhLoad is one member's count of requests in flight, alone on its cache
// line so that picks of different members do not contend.
type bhLoad struct {
	n atomic.Int64
	_ [56]byte
}

// Picker returns a picker over set that shares b's ring and counts.
func (b *BoundedHash) Picker(set *Set) Picker {
	p := &bhPicker{
		hashPicker: *b.ch.newPicker(set),
		load:       make([]*bhLoad, len(set.All)),
		w:          make([]uint64, len(set.All)),
		cum:        make([]uint64, len(set.All)),
		factor:     b.factor,
		total:      &b.total,
		usable:     len(set.Usable),
	}
	for _, i := range set.Usable {
		p.w[i] = uint64(max(set.Weights[i], 1))
		p.cum[i] = p.tw
		p.tw += p.w[i]
	}
	next := make(map[Endpoint]*bhLoad, len(set.All))
	var dropped []*bhLoad
	b.mu.Lock()
	for i, e := range set.All {
		l := next[e]
		if l == nil {
			l = b.state[e]
		}
		if l == nil {
			l = new(bhLoad)
		}
		next[e] = l
		p.load[i] = l
	}
	for e, l := range b.state {
		if _, ok := next[e]; !ok && l.n.Load() > 0 {
			next[e] = l
			dropped = append(dropped, l)
		}
	}
	b.state = next
	b.mu.Unlock()
	p.excluded = excludedLoads(p.load, set.Usable, dropped)
	return p
}

// excludedLoads returns the counts that total includes but T must not: those
// of the members of All that are not usable, and of dropped members, each
// once.
func excludedLoads(load []*bhLoad, usable []int, dropped []*bhLoad) []*bhLoad {
	in := make(map[*bhLoad]bool, len(load))
	for _, i := range usable {
		in[load[i]] = true
	}
	var out []*bhLoad
	for _, l := range load {
		if !in[l] {
			in[l] = true
			out = append(out, l)
		}
	}
	return append(out, dropped...)
}

// bhPicker is ConsistentHash's picker over one Set, plus the shared counts
// and the Set's weights laid out for the slot formula.
type bhPicker struct {
	hashPicker
	load     []*bhLoad // load[i] is the count of All[i]
	w        []uint64  // w[i] is the weight of All[i] if usable
	cum      []uint64  // cum[i] is the total weight of the usable members before All[i]
	tw       uint64    // total weight of the usable members
	factor   uint64
	total    *atomic.Int64 // the strategy's
	excluded []*bhLoad     // counted in total, not in T
	usable   int           // len(Usable): distinct members a walk can check
}

// Pick implements [Picker]. It never blocks or allocates.
func (p *bhPicker) Pick(r *http.Request, tried *Tried) int {
	if p.ring != nil {
		if k := p.key(r); k != "" {
			if m := p.walk(keyCRC(k), tried); m >= 0 {
				return m
			}
			// Only a member without points can be left; round robin
			// finds it.
		}
	}
	i := p.rr.Pick(r, tried)
	if i >= 0 {
		p.load[i].n.Add(1)
		p.total.Add(1)
	}
	return i
}

// seenBits is the number of members whose visits a walk remembers; a
// member further down All may be checked twice, which costs time only.
const seenBits = 512

// walk goes round the ring from h to the first usable, untried member with
// room, counts the request on it and returns it. If every such member is
// full it counts the request on the first one it passed, and it returns -1
// only if it passed none.
func (p *bhPicker) walk(h uint32, tried *Tried) int {
	r := p.ring
	j := r.start(h)
	if j < 0 || p.tw == 0 { // no point, or no usable member
		return -1
	}
	check := tried.Len() > 0
	var tot uint64 // ⌈(T+1)·c⌉ once needed; 0 before
	first, checked := -1, 0
	var seen [seenBits / 64]uint64
	for range r.runs + 1 {
		m := int(r.owner[j])
		j = int(r.next[j])
		if !p.ok[m] || check && tried.Has(p.rr.all[m]) {
			continue
		}
		if m < seenBits {
			if seen[m/64]&(1<<(m%64)) != 0 {
				continue
			}
			seen[m/64] |= 1 << (m % 64)
		}
		if first < 0 {
			first = m
		}
		if p.take(m, &tot) {
			return m
		}
		if checked++; checked == p.usable {
			break
		}
	}
	if first >= 0 {
		p.load[first].n.Add(1)
		p.total.Add(1)
	}
	return first
}

// take counts the request on All[m], which is usable, if it has room, and
// reports whether it did. An idle member always has room (its slots are at
// least 1), so only a busy one needs its slots, and only then is *tot
// computed, if it is still 0: a walk that meets an idle member first
// reads no count but that member's.
func (p *bhPicker) take(m int, tot *uint64) bool {
	l := p.load[m]
	var slots int64 // 0: not computed yet
	for {
		v := l.n.Load()
		if v > 0 {
			if slots == 0 {
				if *tot == 0 {
					*tot = p.totalSlots()
				}
				slots = p.slots(m, *tot)
			}
			if v >= slots {
				return false
			}
		}
		if l.n.CompareAndSwap(v, v+1) {
			p.total.Add(1)
			return true
		}
	}
}

// totalSlots returns ⌈(T+1)·c⌉, T being the requests in flight on the
// usable members.
func (p *bhPicker) totalSlots() uint64 {
	t := p.total.Load()
	for _, l := range p.excluded {
		t -= l.n.Load()
	}
	// Concurrent picks and Dones update total and the member counts one
	// after the other, so t may be off by a request or two, even negative.
	t = max(t, 0)
	hi, lo := bits.Mul64(uint64(t)+1, p.factor)
	lo, carry := bits.Add64(lo, factorUnit-1, 0)
	hi += carry
	if hi >= factorUnit { // the quotient needs more than 64 bits: some 2^44 requests in flight
		return math.MaxInt64
	}
	tot, _ := bits.Div64(hi, lo, factorUnit)
	return min(tot, math.MaxInt64)
}

// slots returns the slots of All[m], which is usable, out of tot in all,
// as HAProxy's chash_server_is_eligible shares them: with tot = q·tw + rem,
// w·q, plus the part of rem that falls within [cum, cum+w) of tw; at least
// 1.
func (p *bhPicker) slots(m int, tot uint64) int64 {
	q, rem := tot/p.tw, tot%p.tw
	w, cum := p.w[m], p.cum[m]
	s := w*q + mulDiv(cum+w, rem, p.tw) - mulDiv(cum, rem, p.tw)
	return int64(min(max(s, 1), math.MaxInt64))
}

// mulDiv returns ⌊a·b/d⌋ for a ≤ d and b < d.
func mulDiv(a, b, d uint64) uint64 {
	if a|b < 1<<32 {
		return a * b / d
	}
	hi, lo := bits.Mul64(a, b)
	q, _ := bits.Div64(hi, lo, d) // hi < d since a·b < d²
	return q
}

// Done implements [Observer]: it uncounts the request. A Done with nothing
// in flight is ignored.
func (p *bhPicker) Done(i int, _ Result) {
	if i < 0 || i >= len(p.load) {
		return
	}
	l := p.load[i]
	for {
		v := l.n.Load()
		if v <= 0 {
			return
		}
		if l.n.CompareAndSwap(v, v-1) {
			p.total.Add(-1)
			return
		}
	}
}
