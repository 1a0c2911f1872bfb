package strategy

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/tinylb/lb/internal/effweight"
)

// lcConns returns the in-flight counts of All as p sees them.
func lcConns(p Picker) []int {
	lp := p.(*lcPicker)
	lp.mu.Lock()
	defer lp.mu.Unlock()
	c := make([]int, len(lp.st))
	for i, st := range lp.st {
		c[i] = st.inFlight()
	}
	return c
}

// lcSetConns sets the in-flight counts of All.
func lcSetConns(p Picker, conns []int) {
	lp := p.(*lcPicker)
	lp.mu.Lock()
	defer lp.mu.Unlock()
	for i, c := range conns {
		lp.st[i].picked = c + int(lp.st[i].done.Load())
	}
}

// lcSmooth returns the cw and ew of All[i] as p sees them.
func lcSmooth(p Picker, i int) (cw, ew int) {
	lp := p.(*lcPicker)
	lp.mu.Lock()
	defer lp.mu.Unlock()
	return lp.st[i].cw, lp.st[i].ew
}

// TestLeastConnVectors checks every vector of §3 (picks with no
// completions in between).
func TestLeastConnVectors(t *testing.T) {
	tests := []struct {
		weights   []int
		start     []int
		want      string
		wantConns []int
	}{
		{[]int{1, 1, 1}, []int{0, 0, 0}, "a b c c b a", []int{2, 2, 2}},
		{[]int{2, 1}, []int{0, 0}, "a b a b a a", []int{4, 2}},
		{[]int{1, 2}, []int{1, 1}, "b b a b a", []int{3, 4}},
		{[]int{1, 1, 1}, []int{3, 1, 1}, "b c c b", []int{3, 3, 3}},
		{[]int{5, 1, 1}, []int{0, 0, 0}, "a b c a a a a", []int{5, 1, 1}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint("§3 ", tt.weights, " from ", tt.start), func(t *testing.T) {
			all := endpoints(tt.weights...)
			p := NewLeastConn().Picker(newSet(all, nil))
			lcSetConns(p, tt.start)
			n := (len(tt.want) + 1) / 2
			if got := pickNames(t, p, all, n); got != tt.want {
				t.Errorf("picks = %q; want %q", got, tt.want)
			}
			if got := lcConns(p); !slices.Equal(got, tt.wantConns) {
				t.Errorf("end conns = %v; want %v", got, tt.wantConns)
			}
		})
	}
}

// TestLeastConnDone checks that Done uncounts a request whatever its
// result, that the count never goes below zero, and that a Failure lowers
// ew as in §1.
func TestLeastConnDone(t *testing.T) {
	all := endpoints(4, 1)
	set := newSet(all, nil)
	set.MaxFails = 2
	lc := NewLeastConn()
	p := lc.Picker(set)
	for range 4 {
		p.Pick(nil, nil)
	}
	if got, want := lcConns(p), []int{3, 1}; !slices.Equal(got, want) {
		t.Fatalf("conns after 4 picks = %v; want %v", got, want)
	}
	o := p.(Observer)
	o.Done(0, Success)
	o.Done(0, Ignored)
	o.Done(1, Failure)
	if got, want := lcConns(p), []int{1, 0}; !slices.Equal(got, want) {
		t.Errorf("conns after 3 Done = %v; want %v", got, want)
	}
	if _, ew := lcSmooth(p, 1); ew != 1 {
		t.Errorf("b after a failure at w1 max_fails=2: ew=%d; want 1 (1/2 = 0)", ew)
	}
	o.Done(0, Failure)
	if _, ew := lcSmooth(p, 0); ew != 4-2 {
		t.Errorf("a after a failure at w4 max_fails=2: ew=%d; want 2", ew)
	}
	if ew, ok := effweight.Of(p, 0); ew != 2 || !ok {
		t.Errorf("EffectiveWeight(a) = %d, %t; want 2, true", ew, ok)
	}
	o.Done(0, Success) // one more than picked
	if got, want := lcConns(p), []int{0, 0}; !slices.Equal(got, want) {
		t.Errorf("conns after extra Done = %v; want %v", got, want)
	}
}

// TestLeastConnCountsSurviveRebuild checks that in-flight counts belong to
// the strategy: a request picked on one picker and finished on it is
// uncounted for the pickers built since.
func TestLeastConnCountsSurviveRebuild(t *testing.T) {
	all := endpoints(1, 1, 1)
	lc := NewLeastConn()
	old := lc.Picker(newSet(all, nil))
	old.Pick(nil, nil) // a
	old.Pick(nil, nil) // b
	p := lc.Picker(newSet(all, []int{0, 1}))
	// a and b tie at one each; the tie pass picks b (a gave back 3 on pick 1).
	if got := name(all, p.Pick(nil, nil)); got != "b" {
		t.Errorf("pick with c down = %s; want b", got)
	}
	old.(Observer).Done(0, Success)
	if got, want := lcConns(p), []int{0, 2, 0}; !slices.Equal(got, want) {
		t.Errorf("conns = %v; want %v", got, want)
	}
}

// TestLeastConnRemoved checks Done on a member dropped from the Set: it must
// not panic or go negative, and a member added back while it still has
// requests in flight keeps its count.
func TestLeastConnRemoved(t *testing.T) {
	all := endpoints(1, 1, 1)
	lc := NewLeastConn()
	p := lc.Picker(newSet(all, nil))
	for range 6 {
		p.Pick(nil, nil) // two each
	}
	p2 := lc.Picker(newSet(all[:2], nil))
	p.(Observer).Done(2, Success) // c, after it left
	p3 := lc.Picker(newSet(all, nil))
	if got, want := lcConns(p3), []int{2, 2, 1}; !slices.Equal(got, want) {
		t.Errorf("conns with c back = %v; want %v", got, want)
	}
	if got := p3.Pick(nil, nil); got != 2 {
		t.Errorf("pick = %s; want c, the least loaded", name(all, got))
	}
	for range 3 {
		p.(Observer).Done(2, Success)
	}
	p2.(Observer).Done(0, Success)
	if got, want := lcConns(p3), []int{1, 2, 0}; !slices.Equal(got, want) {
		t.Errorf("conns = %v; want %v", got, want)
	}

	// Dropped with nothing in flight: c starts afresh when it comes back.
	if _, ok := effweight.Of(lc.Picker(newSet(all[:2], nil)), 2); ok {
		t.Errorf("EffectiveWeight(c) reports c, which is no member")
	}
	p4 := lc.Picker(newSet(all, nil))
	if got, want := lcConns(p4), []int{1, 2, 0}; !slices.Equal(got, want) {
		t.Errorf("conns = %v; want %v", got, want)
	}
}

// TestLeastConnTried checks that tried members are skipped and that -1
// means every usable member was tried.
func TestLeastConnTried(t *testing.T) {
	all := endpoints(1, 1, 1)
	p := NewLeastConn().Picker(newSet(all, []int{0, 1}))
	var tried Tried
	tried.Add(all[0])
	if got := p.Pick(nil, &tried); got != 1 {
		t.Errorf("pick with a tried = %s; want b", name(all, got))
	}
	tried.Add(all[1])
	if got := p.Pick(nil, &tried); got != -1 {
		t.Errorf("pick with every usable member tried = %d; want -1", got)
	}
	if got, want := lcConns(p), []int{0, 1, 0}; !slices.Equal(got, want) {
		t.Errorf("conns = %v; want %v", got, want)
	}
}

// TestLeastConnBurst checks that choose-and-count is one step: a burst of
// concurrent picks with no Done spreads evenly, counts differing by at most
// one for equal weights (and by at most one weight unit of share for
// unequal ones).
func TestLeastConnBurst(t *testing.T) {
	const goroutines, per = 8, 1001
	for _, weights := range [][]int{{1, 1, 1, 1, 1, 1, 1}, {3, 1, 2}} {
		t.Run(fmt.Sprint(weights), func(t *testing.T) {
			all := endpoints(weights...)
			p := NewLeastConn().Picker(newSet(all, nil))
			var wg sync.WaitGroup
			for range goroutines {
				wg.Go(func() {
					for range per {
						p.Pick(nil, nil)
					}
				})
			}
			wg.Wait()
			conns := lcConns(p)
			sum := 0
			for _, w := range weights {
				sum += w
			}
			for i, c := range conns {
				// c/w within one request of the ideal share.
				ideal := float64(goroutines*per) * float64(weights[i]) / float64(sum)
				if d := float64(c) - ideal; d > float64(weights[i]) || d < -float64(weights[i]) {
					t.Errorf("conns = %v; %s has %d, ideal %.1f", conns, name(all, i), c, ideal)
				}
			}
			if slices.Max(weights) == slices.Min(weights) && slices.Max(conns)-slices.Min(conns) > 1 {
				t.Errorf("conns = %v; want counts within 1 of each other", conns)
			}
		})
	}
}
