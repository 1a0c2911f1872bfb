package strategy

import (
	"sync"
	"testing"
)

// TestRoundRobinSnapshot checks the §2 table: A B C D with B dead gives
// A C D A C D, a third each, not the naive skip-forward A C C D.
func TestRoundRobinSnapshot(t *testing.T) {
	tests := []struct {
		name   string
		n      int
		usable []int
		picks  int
		want   string
	}{
		{"§2 B dead", 4, []int{0, 2, 3}, 6, "a c d a c d"},
		{"all up", 4, nil, 8, "a b c d a b c d"},
		{"one up", 3, []int{1}, 3, "b b b"},
		{"none up", 3, []int{}, 2, "- -"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			all := endpoints(make([]int, tt.n)...)
			p := NewRoundRobin().Picker(newSet(all, tt.usable))
			if got := pickNames(t, p, all, tt.picks); got != tt.want {
				t.Errorf("picks = %q; want %q", got, tt.want)
			}
		})
	}
}

// TestRoundRobinCounterSurvivesRebuild checks that the cursor belongs to the
// strategy (§2: publish a new snapshot, keep one counter).
func TestRoundRobinCounterSurvivesRebuild(t *testing.T) {
	all := endpoints(1, 1, 1, 1)
	rr := NewRoundRobin()
	p := rr.Picker(newSet(all, nil))
	got := pickNames(t, p, all, 3)
	p = rr.Picker(newSet(all, []int{0, 2, 3}))
	got += " | " + pickNames(t, p, all, 3)
	if want := "a b c | a c d"; got != want {
		t.Errorf("picks = %q; want %q", got, want)
	}
}

// TestRoundRobinTried checks that a retry steps forward to the next usable
// member not tried, and that -1 means every usable member was tried.
func TestRoundRobinTried(t *testing.T) {
	all := endpoints(1, 1, 1, 1)
	p := NewRoundRobin().Picker(newSet(all, []int{0, 2, 3}))
	var tried Tried
	tried.Add(all[0])
	tried.Add(all[1]) // not usable: must not matter
	// Counter 0 lands on a (tried) and steps to c; 1 is c; 2 is d.
	for k, want := range []string{"c", "c", "d", "c"} {
		if got := name(all, p.Pick(nil, &tried)); got != want {
			t.Errorf("pick %d = %s; want %s", k, got, want)
		}
	}
	tried.Add(all[2])
	tried.Add(all[3])
	tried.Add(all[3]) // the fifth entry goes past Tried's inline storage
	if got := p.Pick(nil, &tried); got != -1 {
		t.Errorf("pick with every usable member tried = %d; want -1", got)
	}
}

// TestRoundRobinConcurrentExact checks §2's concurrency claim: fetch-and-add
// gives each caller its own index, so the split is exact.
func TestRoundRobinConcurrentExact(t *testing.T) {
	const goroutines, per = 8, 3000
	all := endpoints(1, 1, 1, 1, 1)
	p := NewRoundRobin().Picker(newSet(all, []int{0, 1, 3, 4}))
	counts := make([][]int, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		counts[g] = make([]int, len(all))
		wg.Go(func() {
			for range per {
				counts[g][p.Pick(nil, nil)]++
			}
		})
	}
	wg.Wait()
	total := make([]int, len(all))
	for _, c := range counts {
		for i, n := range c {
			total[i] += n
		}
	}
	want := []int{6000, 6000, 0, 6000, 6000}
	for i := range total {
		if total[i] != want[i] {
			t.Errorf("picks of %s = %d; want %d (all: %v)", name(all, i), total[i], want[i], total)
		}
	}
}
