package strategy

import (
	"fmt"
	"strconv"
	"testing"
	"time"
)

// FuzzStrategies drives the seven strategies through random sequences of
// membership, health and weight changes (each builds new pickers, while
// requests picked earlier finish on the pickers that made them),
// interleaved with picks, retries and completions. The invariants:
//
//   - Pick returns a position listed in Set.Usable, never a tried member,
//     and -1 only when every usable member is tried;
//   - least connections, least request and peak EWMA count exactly the
//     requests in flight per member;
//   - bounded hashing counts exactly the requests in flight per member too;
//   - a consistent-hash picker that reuses a ring agrees with a fresh one,
//     and so does a bounded-hash picker while it has nothing in flight;
//   - smooth weighted round robin is exact over whole cycles while nothing
//     changes (§1): both for a fresh SmoothWeighted per Set and for the
//     long-lived one whenever its state is back at the start of a cycle.
//
// The input's first byte sets Scale (bit 0: 1 or 4) and MaxFails (bits 1-2).
// Each later byte is an op: its top 3 bits are the kind, see fuzzer.do.
func FuzzStrategies(f *testing.F) {
	f.Add([]byte{0, 0xa0, 0xbf, 0x7f, 0xa5})
	f.Add([]byte{1, 0xbf, 0x23, 0xbf, 0x43, 0x9a, 0xbf, 0x02, 0xbf})
	f.Add([]byte{6, 0xa3, 0xc1, 0xe9, 0xdf, 0xc3, 0x31, 0xb0, 0xf2, 0x60, 0xbf})
	f.Add([]byte{3, 0x65, 0x9c, 0xbf, 0x84, 0xaf, 0xd3, 0xff, 0x7d, 0x2a, 0xbf, 0xe4})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) == 0 || len(ops) > 512 {
			return
		}
		fz := newFuzzer(t, ops[0])
		for _, b := range ops[1:] {
			fz.do(b)
		}
	})
}

// fuzzPool is the number of endpoints a fuzz run chooses from.
const fuzzPool = 6

// fuzzWeights are the configured weights of the pool's endpoints.
var fuzzWeights = [fuzzPool]int{1, 2, 3, 1, 5, 2}

type fuzzer struct {
	t        *testing.T
	pool     [fuzzPool]*testEP
	in, up   [fuzzPool]bool // member of All; usable
	ramp     [fuzzPool]int  // 0: full weight; 1-3: a quarter of it per step
	scale    int
	maxFails int

	strategies [7]Strategy // RoundRobin, SmoothWeighted, LeastConn, ConsistentHash, LeastRequest, PeakEWMA, BoundedHash
	pickers    [7]Picker
	clock      clock // PeakEWMA's, a millisecond further at every op
	set        *Set
	pending    []pendingPick // picks not yet Done, oldest first

	// The long-lived SmoothWeighted's current cycle: counts per position
	// in All since the cycle started, or nil if no cycle is being checked.
	cycle []int
	// A fresh ConsistentHash over the current Set, made when first needed.
	freshHash Picker
	// A fresh SmoothWeighted over the current Set and its counts.
	shadow       Picker
	shadowCounts []int
	shadowPicks  int
}

type pendingPick struct {
	s int      // strategy index
	p Observer // the picker that made the pick
	i int
	e Endpoint
}

func newFuzzer(t *testing.T, cfg byte) *fuzzer {
	fz := &fuzzer{t: t, scale: 1, maxFails: int(cfg>>1) & 3}
	if cfg&1 != 0 {
		fz.scale = 4
	}
	for i := range fz.pool {
		fz.pool[i] = &testEP{name: string(rune('a' + i)), key: fmt.Sprintf("http://10.0.0.%d:80", i+1), w: fuzzWeights[i]}
		fz.in[i], fz.up[i] = true, true
	}
	lr, err := NewLeastRequest(LeastRequestConfig{Rand: seeded(uint64(cfg))})
	if err != nil {
		t.Fatal(err)
	}
	pe, err := NewPeakEWMA(PeakEWMAConfig{Rand: seeded(uint64(cfg) + 1), Now: fz.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	fz.strategies = [7]Strategy{NewRoundRobin(), NewSmoothWeighted(), NewLeastConn(), NewConsistentHash(headerKey), lr, pe,
		NewBoundedHash(headerKey, 1.25)}
	fz.rebuild()
	return fz
}

// do runs one op. Kinds (top 3 bits): 0 add, 1 remove, 2 up, 3 down
// member (low 3 bits mod 6); 4 set member's ramp to bits 3-4; 5 make
// (low 5 bits)+1 picks; 6 pick with the members in the low 5 bits tried;
// 7 finish the (low 3 bits)+1 oldest picks with result bits 3-4 (mod 3).
func (fz *fuzzer) do(b byte) {
	m := int(b&7) % fuzzPool
	arg := int(b>>3) & 3
	fz.clock.advance(time.Millisecond)
	switch b >> 5 {
	case 0:
		fz.in[m] = true
		fz.rebuild()
	case 1:
		fz.in[m] = false
		fz.rebuild()
	case 2:
		fz.up[m] = true
		fz.rebuild()
	case 3:
		fz.up[m] = false
		fz.rebuild()
	case 4:
		fz.ramp[m] = arg
		fz.rebuild()
	case 5:
		for k := range int(b&31) + 1 {
			fz.pick(int(b)+k, nil)
		}
	case 6:
		var tried Tried
		for i := range 5 {
			if b&(1<<i) != 0 {
				tried.Add(fz.pool[i])
			}
		}
		fz.cycle = nil // a retry is not part of a cycle
		fz.pick(int(b), &tried)
	case 7:
		for range int(b&7) + 1 {
			fz.done(Result(arg % 3))
		}
	}
	fz.checkConns()
}

// rebuild makes a Set from the pool and new pickers over it.
func (fz *fuzzer) rebuild() {
	set := &Set{Scale: fz.scale, MaxFails: fz.maxFails}
	for i, e := range fz.pool {
		if !fz.in[i] {
			continue
		}
		w := e.w * fz.scale
		if fz.ramp[i] > 0 {
			w = max(w*fz.ramp[i]/4, 1)
		}
		if fz.up[i] {
			set.Usable = append(set.Usable, len(set.All))
		}
		set.All = append(set.All, e)
		set.Weights = append(set.Weights, w)
	}
	fz.set = set
	for s, st := range fz.strategies {
		fz.pickers[s] = st.Picker(set)
	}
	fz.cycle = nil
	fz.freshHash = nil
	fz.shadow = NewSmoothWeighted().Picker(set)
	fz.shadowCounts = make([]int, len(set.All))
	fz.shadowPicks = 0
}

// pick makes one pick with each picker and checks it.
func (fz *fuzzer) pick(n int, tried *Tried) {
	t, set := fz.t, fz.set
	key := ""
	if n%5 != 0 {
		key = "k" + strconv.Itoa(n)
	}
	r := keyReq(key)
	anyLeft := false
	for _, i := range set.Usable {
		anyLeft = anyLeft || !tried.Has(set.All[i])
	}
	if tried.Len() == 0 {
		fz.startCycle()
	}
	idle := fz.idle(6) // before this pick
	for s, p := range fz.pickers {
		i := p.Pick(r, tried)
		switch {
		case i == -1:
			if anyLeft {
				t.Fatalf("strategy %d: -1 with usable members %v and tried %d", s, set.Usable, tried.Len())
			}
			continue
		case i < -1 || i >= len(set.All):
			t.Fatalf("strategy %d: pick %d out of range [0,%d)", s, i, len(set.All))
		case !fz.usable(i):
			t.Fatalf("strategy %d: pick %d not usable %v", s, i, set.Usable)
		case tried.Has(set.All[i]):
			t.Fatalf("strategy %d: picked tried member %d", s, i)
		}
		if (s == 3 || s == 6 && idle) && tried.Len() == 0 && key != "" {
			if fz.freshHash == nil {
				fz.freshHash = NewConsistentHash(headerKey).Picker(set)
			}
			if j := fz.freshHash.Pick(r, nil); j != i {
				t.Fatalf("strategy %d: key %q went to %d; a fresh consistent-hash ring says %d", s, key, i, j)
			}
		}
		if s == 1 && fz.cycle != nil {
			fz.cycle[i]++
		}
		if o, ok := p.(Observer); ok {
			fz.pending = append(fz.pending, pendingPick{s: s, p: o, i: i, e: set.All[i]})
		}
	}
	if tried.Len() == 0 {
		fz.shadowPick()
		fz.endCycle()
	}
}

// startCycle starts checking a cycle of the long-lived SmoothWeighted if
// none is being checked and its state is at the start of one: cw 0 and ew
// at full weight for every usable member.
func (fz *fuzzer) startCycle() {
	if fz.cycle != nil || len(fz.set.Usable) == 0 {
		return
	}
	for _, i := range fz.set.Usable {
		if cw, ew := swrrState(fz.pickers[1], i); cw != 0 || ew != fz.set.Weights[i] {
			return
		}
	}
	fz.cycle = make([]int, len(fz.set.All))
}

// endCycle checks a cycle once it has as many picks as the weight sum.
func (fz *fuzzer) endCycle() {
	if fz.cycle == nil {
		return
	}
	n, w := 0, 0
	for _, i := range fz.set.Usable {
		n += fz.cycle[i]
		w += fz.set.Weights[i]
	}
	if n < w {
		return
	}
	for _, i := range fz.set.Usable {
		if fz.cycle[i] != fz.set.Weights[i] {
			fz.t.Fatalf("smooth weighted: cycle of %d picks gave %v; weights %v usable %v",
				w, fz.cycle, fz.set.Weights, fz.set.Usable)
		}
		if cw, _ := swrrState(fz.pickers[1], i); cw != 0 {
			fz.t.Fatalf("smooth weighted: after a cycle member %d has cw %d; want 0", i, cw)
		}
	}
	fz.cycle = nil
}

// shadowPick picks with the fresh SmoothWeighted and checks its counts at
// the end of every cycle.
func (fz *fuzzer) shadowPick() {
	i := fz.shadow.Pick(nil, nil)
	if i < 0 {
		return
	}
	fz.shadowCounts[i]++
	fz.shadowPicks++
	w := 0
	for _, i := range fz.set.Usable {
		w += fz.set.Weights[i]
	}
	if fz.shadowPicks%w != 0 {
		return
	}
	for _, i := range fz.set.Usable {
		if want := fz.shadowPicks / w * fz.set.Weights[i]; fz.shadowCounts[i] != want {
			fz.t.Fatalf("fresh smooth weighted: %d picks gave %v; weights %v usable %v",
				fz.shadowPicks, fz.shadowCounts, fz.set.Weights, fz.set.Usable)
		}
	}
}

// done finishes the oldest pending pick.
func (fz *fuzzer) done(r Result) {
	if len(fz.pending) == 0 {
		return
	}
	pp := fz.pending[0]
	fz.pending = fz.pending[1:]
	if pp.s == 1 && r == Failure && fz.maxFails > 0 {
		fz.cycle = nil // the failure lowers an effective weight
	}
	if lo, ok := pp.p.(LatencyObserver); ok && r != Ignored {
		lo.DoneAfter(pp.i, r, time.Duration(pp.i+1)*3*time.Millisecond)
		return
	}
	pp.p.Done(pp.i, r)
}

// checkConns checks that least connections, least request and peak EWMA
// count exactly the pending picks of each member.
func (fz *fuzzer) checkConns() {
	for s, counts := range map[int]func(Picker) []int{2: lcConns, 4: lrActive, 5: pePending} {
		want := make(map[Endpoint]int)
		for _, pp := range fz.pending {
			if pp.s == s {
				want[pp.e]++
			}
		}
		got := counts(fz.pickers[s])
		for i, e := range fz.set.All {
			if got[i] != want[e] {
				fz.t.Fatalf("strategy %d: %v in flight on %v; want %d", s, got[i], e, want[e])
			}
		}
	}
	bounded := make(map[Endpoint]int)
	for _, pp := range fz.pending {
		if pp.s == 6 {
			bounded[pp.e]++
		}
	}
	bh := fz.strategies[6].(*BoundedHash)
	for _, e := range fz.pool {
		if got := bh.InFlight(e); got != bounded[e] {
			fz.t.Fatalf("bounded hash: %v in flight on %v; want %d", got, e, bounded[e])
		}
	}
}

// idle reports whether strategy s has no pick pending.
func (fz *fuzzer) idle(s int) bool {
	for _, pp := range fz.pending {
		if pp.s == s {
			return false
		}
	}
	return true
}

func (fz *fuzzer) usable(i int) bool {
	for _, u := range fz.set.Usable {
		if u == i {
			return true
		}
	}
	return false
}

// TestFuzzStrategiesSmoke runs the fuzz body over a few fixed long inputs,
// so that plain go test covers more than the seed corpus.
func TestFuzzStrategiesSmoke(t *testing.T) {
	for seed := range 20 {
		ops := make([]byte, 400)
		x := uint32(seed*2654435761 + 1)
		for k := range ops {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			ops[k] = byte(x)
		}
		t.Run(strconv.Itoa(seed), func(t *testing.T) {
			fz := newFuzzer(t, ops[0])
			for _, b := range ops[1:] {
				fz.do(b)
			}
		})
	}
}
