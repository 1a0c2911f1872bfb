package strategy

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/tinylb/lb/internal/effweight"
)

// swrrState returns the cw and ew of All[i] as p sees them.
func swrrState(p Picker, i int) (cw, ew int) {
	sp := p.(*swrrPicker)
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.st[i].cw, sp.st[i].ew
}

// TestSmoothWeightedVectors checks every no-failure vector of §1.
func TestSmoothWeightedVectors(t *testing.T) {
	tests := []struct {
		weights []int
		want    string
	}{
		{[]int{5, 1, 1}, "a a b a c a a a a b a c a a"}, // "then repeats"
		{[]int{4, 2, 1}, "a b a c a b a"},
		{[]int{1, 1, 1}, "a b c a b c"},
		{[]int{3, 1}, "a a b a a a b a"},
		{[]int{2, 3, 5}, "c b a c b c c a b c"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint("§1 ", tt.weights), func(t *testing.T) {
			all := endpoints(tt.weights...)
			p := NewSmoothWeighted().Picker(newSet(all, nil))
			n := strings.Count(tt.want, " ") + 1
			if got := pickNames(t, p, all, n); got != tt.want {
				t.Errorf("picks = %q; want %q", got, tt.want)
			}
		})
	}
}

// TestSmoothWeightedTrace checks the §1 cw trace for a5 b1 c1.
func TestSmoothWeightedTrace(t *testing.T) {
	all := endpoints(5, 1, 1)
	p := NewSmoothWeighted().Picker(newSet(all, nil))
	want := []struct {
		pick string
		cw   [3]int
	}{
		{"a", [3]int{-2, 1, 1}},
		{"a", [3]int{-4, 2, 2}},
		{"b", [3]int{1, -4, 3}},
		{"a", [3]int{-1, -3, 4}},
		{"c", [3]int{4, -2, -2}},
		{"a", [3]int{2, -1, -1}},
		{"a", [3]int{0, 0, 0}},
	}
	for k, w := range want {
		got := name(all, p.Pick(nil, nil))
		var cw [3]int
		for i := range cw {
			cw[i], _ = swrrState(p, i)
		}
		if got != w.pick || cw != w.cw {
			t.Errorf("pick %d = %s %v; want %s %v", k+1, got, cw, w.pick, w.cw)
		}
	}
}

// TestSmoothWeightedHeavy checks the §1 vector a100 b1: b is pick #51 of
// 101, every other pick is a.
func TestSmoothWeightedHeavy(t *testing.T) {
	all := endpoints(100, 1)
	p := NewSmoothWeighted().Picker(newSet(all, nil))
	for k := 1; k <= 101; k++ {
		want := 0
		if k == 51 {
			want = 1
		}
		if got := p.Pick(nil, nil); got != want {
			t.Errorf("pick #%d = %s; want %s", k, name(all, got), name(all, want))
		}
	}
}

// TestSmoothWeightedRecovery1 checks §1 Recovery vector 1: a5 b1 c1 with
// max_fails=1. Pick 1 is a and fails; a is then ineligible for ten picks
// (modelled by a Set whose Usable leaves it out), then eligible with ew=0.
func TestSmoothWeightedRecovery1(t *testing.T) {
	all := endpoints(5, 1, 1)
	s := NewSmoothWeighted()
	set := newSet(all, nil)
	set.MaxFails = 1
	p := s.Picker(set)
	if got := p.Pick(nil, nil); got != 0 {
		t.Fatalf("pick 1 = %s; want a", name(all, got))
	}
	p.(Observer).Done(0, Failure)
	if cw, ew := swrrState(p, 0); cw != -2 || ew != 0 {
		t.Errorf("after the failure a has cw=%d ew=%d; want cw=-2 ew=0", cw, ew)
	}

	down := newSet(all, []int{1, 2})
	down.MaxFails = 1
	p = s.Picker(down)
	if got, want := pickNames(t, p, all, 10), "b c b c b c b c b c"; got != want {
		t.Errorf("t=1..10: picks = %q; want %q", got, want)
	}

	p = s.Picker(set)
	var picks []string
	var ews []int
	for range 21 {
		i := p.Pick(nil, nil)
		picks = append(picks, name(all, i))
		p.(Observer).Done(i, Success)
		_, ew := swrrState(p, 0)
		ews = append(ews, ew)
	}
	if got, want := strings.Join(picks, " "), "b c b a a c a a b a a a c a a b a a a c a"; got != want {
		t.Errorf("t=11 burst: picks = %q; want %q", got, want)
	}
	if got, want := fmt.Sprint(ews[:6]), "[1 2 3 4 5 5]"; got != want {
		t.Errorf("ew(a) over the first passes = %s; want %s", got, want)
	}
	if picks[3] != "a" || strings.Contains(strings.Join(picks[:3], ""), "a") {
		t.Errorf("a's first pick is not the 4th request: %v", picks)
	}
	for k := 6; k+7 <= len(picks); k += 7 {
		if got := strings.Join(picks[k:k+7], " "); got != "a a b a a a c" {
			t.Errorf("picks %d..%d = %q; want %q", k+1, k+7, got, "a a b a a a c")
		}
	}
}

// TestSmoothWeightedRecovery2 checks §1 Recovery vector 2: a10 b10,
// max_fails=5, the first three picks of a fail (each costs 10/5 = 2 of ew).
// At Scale 16 everything is 16 times larger and the picks are the same.
func TestSmoothWeightedRecovery2(t *testing.T) {
	for _, scale := range []int{1, 16} {
		t.Run(fmt.Sprint("scale ", scale), func(t *testing.T) {
			all := endpoints(10, 10)
			set := scaledSet(all, nil, scale)
			set.MaxFails = 5
			sw := NewSmoothWeighted()
			p := sw.Picker(set)
			var picks []string
			var ews []int
			fails := 0
			for range 14 {
				i := p.Pick(nil, nil)
				r := Success
				if i == 0 && fails < 3 {
					r = Failure
					fails++
				}
				p.(Observer).Done(i, r)
				pick := name(all, i)
				if r == Failure {
					pick += "!"
				}
				picks = append(picks, pick)
				_, ew := swrrState(p, 0)
				if got, ok := effweight.Of(p, 0); got != ew || !ok {
					t.Errorf("EffectiveWeight(a) = %d, %t; want %d, true", got, ok, ew)
				}
				ews = append(ews, ew/scale)
			}
			if got, want := strings.Join(picks, " "), "a! b b a! b a! b a b a b a b a"; got != want {
				t.Errorf("picks = %q; want %q", got, want)
			}
			if got, want := fmt.Sprint(ews), "[8 9 10 8 9 8 9 10 10 10 10 10 10 10]"; got != want {
				t.Errorf("ew(a)/scale after each pick = %s; want %s", got, want)
			}
		})
	}
}

// TestSmoothWeightedFailurePenalty checks the §1 completion rule
// ew -= w/max_fails in its edge cases.
func TestSmoothWeightedFailurePenalty(t *testing.T) {
	tests := []struct {
		name     string
		weights  []int
		maxFails int
		result   Result
		fails    int
		wantEW   int
	}{
		{"w5 max_fails=2", []int{5, 1}, 2, Failure, 1, 3},
		{"clamped at 0", []int{5, 1}, 1, Failure, 3, 0},
		{"w1 max_fails=3: no penalty", []int{1, 1}, 3, Failure, 1, 1},
		{"max_fails=0: ew never drops", []int{5, 1}, 0, Failure, 3, 5},
		{"success", []int{5, 1}, 1, Success, 1, 5},
		{"ignored", []int{5, 1}, 1, Ignored, 1, 5},
		{"single peer: no accounting", []int{5}, 1, Failure, 1, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			all := endpoints(tt.weights...)
			set := newSet(all, nil)
			set.MaxFails = tt.maxFails
			p := NewSmoothWeighted().Picker(set)
			for range tt.fails {
				p.(Observer).Done(0, tt.result)
			}
			if _, ew := swrrState(p, 0); ew != tt.wantEW {
				t.Errorf("ew = %d; want %d", ew, tt.wantEW)
			}
		})
	}
}

// TestSmoothWeightedStateSurvivesRebuild checks that cw and ew belong to
// the strategy: a rebuild with the same members changes nothing, and a
// member that was down comes back with the state it left with (§1: an
// ineligible peer's state is untouched by the pass).
func TestSmoothWeightedStateSurvivesRebuild(t *testing.T) {
	all := endpoints(5, 1, 1)
	s := NewSmoothWeighted()
	got := pickNames(t, s.Picker(newSet(all, nil)), all, 3)
	p := s.Picker(newSet(all, nil))
	got += " | " + pickNames(t, p, all, 4)
	if want := "a a b | a c a a"; got != want {
		t.Errorf("picks across a rebuild = %q; want %q", got, want)
	}

	// c goes down after pick 1; its cw of 1 waits for it.
	pickNames(t, p, all, 1)
	p = s.Picker(newSet(all, []int{0, 1}))
	pickNames(t, p, all, 5)
	p = s.Picker(newSet(all, nil))
	if cw, ew := swrrState(p, 2); cw != 1 || ew != 1 {
		t.Errorf("c back up: cw=%d ew=%d; want cw=1 ew=1", cw, ew)
	}
}

// TestSmoothWeightedMembership checks that a member dropped from All loses
// its state and starts afresh (cw=0, ew=weight) when added again, and that
// a weight change clamps ew.
func TestSmoothWeightedMembership(t *testing.T) {
	all := endpoints(5, 1, 1)
	s := NewSmoothWeighted()
	set := newSet(all, nil)
	set.MaxFails = 1
	p := s.Picker(set)
	pickNames(t, p, all, 3) // a a b: c has cw=3
	p.(Observer).Done(2, Failure)
	if cw, ew := swrrState(p, 2); cw != 3 || ew != 0 {
		t.Fatalf("c: cw=%d ew=%d; want cw=3 ew=0", cw, ew)
	}
	if _, ok := effweight.Of(s.Picker(newSet(all[:2], nil)), 2); ok {
		t.Errorf("EffectiveWeight(c) reports c, which is no member")
	}
	p = s.Picker(newSet(all, nil))
	if cw, ew := swrrState(p, 2); cw != 0 || ew != 1 {
		t.Errorf("c re-added: cw=%d ew=%d; want cw=0 ew=1", cw, ew)
	}

	// a's ew is 5. A cut to weight 2 clamps it; a failure costs 1 of it;
	// a raise to weight 8 at Scale 4 (ew 1 becomes 4 of 8) adds the 24
	// units of the raise and keeps the deficit of 4, which the next pass
	// makes good.
	lower := newSet(all, nil)
	lower.Weights[0] = 2
	lower.MaxFails = 2
	p = s.Picker(lower)
	if ew, _ := effweight.Of(p, 0); ew != 2 {
		t.Errorf("a at weight 2: ew=%d; want 2", ew)
	}
	p.(Observer).Done(0, Failure)
	higher := scaledSet(all, nil, 4)
	higher.Weights[0] = 8 * 4
	p = s.Picker(higher)
	if ew, _ := effweight.Of(p, 0); ew != 28 {
		t.Errorf("a raised to weight 8: ew=%d; want 28", ew)
	}
	p.Pick(nil, nil)
	if ew, _ := effweight.Of(p, 0); ew != 32 {
		t.Errorf("a at weight 8 after one pass: ew=%d; want 32", ew)
	}
}

// TestSmoothWeightedWeightChange checks that a member at full strength
// takes a new weight at once: from cw all 0, 1/1/1 raised to 5/1/1 gives
// the §1 sequence a a b a c a a.
func TestSmoothWeightedWeightChange(t *testing.T) {
	s := NewSmoothWeighted()
	all := endpoints(1, 1, 1)
	got := pickNames(t, s.Picker(newSet(all, nil)), all, 3)
	raised := newSet(all, nil)
	raised.Weights[0] = 5
	got += " | " + pickNames(t, s.Picker(raised), all, 14)
	if want := "a b c | a a b a c a a a a b a c a a"; got != want {
		t.Errorf("picks = %q; want %q", got, want)
	}
}

// TestSmoothWeightedScaleChange checks that a change of Set.Scale rescales
// the state, so the §1 sequence carries on as if nothing had changed.
func TestSmoothWeightedScaleChange(t *testing.T) {
	all := endpoints(5, 1, 1)
	s := NewSmoothWeighted()
	got := pickNames(t, s.Picker(newSet(all, nil)), all, 3)
	got += " | " + pickNames(t, s.Picker(scaledSet(all, nil, 16)), all, 4)
	got += " | " + pickNames(t, s.Picker(scaledSet(all, nil, 4)), all, 7)
	if want := "a a b | a c a a | a a b a c a a"; got != want {
		t.Errorf("picks = %q; want %q", got, want)
	}
}

// TestSmoothWeightedTried checks that tried members are left out of the
// pass and keep their state, and that -1 means all usable members tried.
func TestSmoothWeightedTried(t *testing.T) {
	all := endpoints(5, 1, 1)
	p := NewSmoothWeighted().Picker(newSet(all, []int{0, 2}))
	var tried Tried
	tried.Add(all[0])
	if got := p.Pick(nil, &tried); got != 2 {
		t.Errorf("pick with a tried = %s; want c", name(all, got))
	}
	if cw, _ := swrrState(p, 0); cw != 0 {
		t.Errorf("tried a: cw=%d; want 0 (untouched)", cw)
	}
	tried.Add(all[2])
	if got := p.Pick(nil, &tried); got != -1 {
		t.Errorf("pick with every usable member tried = %d; want -1", got)
	}
	if got := NewSmoothWeighted().Picker(newSet(all, []int{})).Pick(nil, nil); got != -1 {
		t.Errorf("pick with nothing usable = %d; want -1", got)
	}
}

// TestSmoothWeightedConcurrentExact checks §2's note that SWRR runs its
// pass under one mutex: concurrent picks still give every member exactly
// its weight over whole cycles.
func TestSmoothWeightedConcurrentExact(t *testing.T) {
	const goroutines, per = 8, 7 * 300
	all := endpoints(5, 1, 1, 3)
	p := NewSmoothWeighted().Picker(newSet(all, nil))
	var mu sync.Mutex
	total := make([]int, len(all))
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			counts := make([]int, len(all))
			for range per {
				i := p.Pick(nil, nil)
				counts[i]++
				p.(Observer).Done(i, Success)
			}
			mu.Lock()
			for i, n := range counts {
				total[i] += n
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	cycles := goroutines * per / 10 // weight sum 10
	for i, e := range all {
		if want := cycles * e.Weight(); total[i] != want {
			t.Errorf("picks of %s = %d; want %d", name(all, i), total[i], want)
		}
	}
	for i := range all {
		if cw, _ := swrrState(p, i); cw != 0 {
			t.Errorf("after whole cycles %s has cw=%d; want 0", name(all, i), cw)
		}
	}
}
