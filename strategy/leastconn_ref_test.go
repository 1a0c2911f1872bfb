package strategy

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// refPick is the two-pass form of §3, as nginx writes it: a scan for the
// first member with the least conns/w, then, if another member ties with
// it, the §1 pass over the tied members from it on. lcPicker.Pick fuses
// the two passes; TestLeastConnFusedMatchesTwoPass holds it to this.
func refPick(p *lcPicker, tried *Tried) int {
	check := tried.Len() > 0
	p.mu.Lock()
	defer p.mu.Unlock()
	best, many := -1, false
	for k := range p.items {
		it := &p.items[k]
		if check && tried.Has(it.e) {
			continue
		}
		if best < 0 {
			best = k
			continue
		}
		b := &p.items[best]
		l, r := it.st.inFlight()*b.w, b.st.inFlight()*it.w
		if l < r {
			best, many = k, false
		} else if l == r {
			many = true
		}
	}
	if best < 0 {
		return -1
	}
	total := 0
	if many {
		first := &p.items[best]
		for k := best; k < len(p.items); k++ {
			it := &p.items[k]
			if check && tried.Has(it.e) {
				continue
			}
			if it.st.inFlight()*first.w != first.st.inFlight()*it.w {
				continue
			}
			total += it.st.add(it.w, p.scale)
			if it.st.cw > p.items[best].st.cw {
				best = k
			}
		}
	}
	b := &p.items[best]
	b.st.cw -= total
	b.st.picked++
	return b.i
}

// lcDump renders every member's state.
func lcDump(p *lcPicker) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := ""
	for _, st := range p.st {
		s += fmt.Sprintf("[cw %d ew %d w %d conns %d]", st.cw, st.ew, st.w, st.inFlight())
	}
	return s
}

// TestLeastConnFusedMatchesTwoPass runs random picks (some with members
// already tried), completions and failures on two LeastConns over the same
// members, one picking with Pick and one with refPick, and requires the
// same choice and the same state after every step.
func TestLeastConnFusedMatchesTwoPass(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 300 {
		n := 1 + rng.IntN(8)
		all := make([]Endpoint, n)
		for i := range all {
			all[i] = &testEP{key: fmt.Sprintf("http://10.0.0.%d:80", i+1), w: 1 + rng.IntN(5)}
		}
		set := newSet(all, nil)
		set.MaxFails = rng.IntN(3)
		fused := NewLeastConn().Picker(set).(*lcPicker)
		ref := NewLeastConn().Picker(set).(*lcPicker)
		var inflight []int
		for step := range 200 {
			switch op := rng.IntN(10); {
			case op < 6 || len(inflight) == 0:
				var tried Tried
				for _, e := range all {
					if rng.IntN(6) == 0 {
						tried.Add(e)
					}
				}
				a, b := fused.Pick(nil, &tried), refPick(ref, &tried)
				if a != b {
					t.Fatalf("round %d step %d: fused picked %d, two-pass %d", round, step, a, b)
				}
				if a >= 0 {
					inflight = append(inflight, a)
				}
			default:
				k := rng.IntN(len(inflight))
				i := inflight[k]
				inflight = append(inflight[:k], inflight[k+1:]...)
				r := Success
				if rng.IntN(4) == 0 {
					r = Failure
				}
				fused.Done(i, r)
				ref.Done(i, r)
			}
			if a, b := lcDump(fused), lcDump(ref); a != b {
				t.Fatalf("round %d step %d: state\n fused:    %s\n two-pass: %s", round, step, a, b)
			}
		}
	}
}
