package strategy

import (
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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

// TestRoundRobinTried checks that retries take the usable members not
// tried in turn, and that -1 means every usable member was tried.
func TestRoundRobinTried(t *testing.T) {
	all := endpoints(1, 1, 1, 1)
	p := NewRoundRobin().Picker(newSet(all, []int{0, 2, 3}))
	var tried Tried
	tried.Add(all[0])
	tried.Add(all[1]) // not usable: must not matter
	// Each request draws its turn from the retry counter once: successive
	// requests go round c and d, the usable members not tried.
	for k, want := range []string{"c", "d", "c", "d"} {
		tried.turn = 0 // a new request with the same members tried
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

// TestRoundRobinRetryKeepsRotation checks that retries do not move the
// first picks: with a member that fails every request, each request's
// first pick still follows the rotation (n consecutive first picks cover
// the n usable members), and the failing member's retries spread evenly
// over the others. Retries used to draw from the first-pick counter, so in
// a pool of a dead and a live member the dead one took every first pick.
func TestRoundRobinRetryKeepsRotation(t *testing.T) {
	tests := []struct {
		name      string
		n         int
		dead      int
		requests  int
		wantFirst []int
		wantRetry []int
	}{
		{"dead a, live b", 2, 0, 60, []int{30, 30}, []int{0, 30}},
		{"a b c d, b dead", 4, 1, 400, []int{100, 100, 100, 100}, []int{34, 0, 33, 33}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			all := endpoints(make([]int, tt.n)...)
			p := NewRoundRobin().Picker(newSet(all, nil))
			first := make([]int, tt.n)
			retry := make([]int, tt.n)
			var tried Tried
			for r := range tt.requests {
				tried.Reset()
				i := p.Pick(nil, &tried)
				require.GreaterOrEqual(t, i, 0, "request %d: first pick", r)
				first[i]++
				if i != tt.dead {
					continue
				}
				tried.Add(all[i])
				j := p.Pick(nil, &tried)
				require.GreaterOrEqual(t, j, 0, "request %d: retry pick", r)
				require.NotEqual(t, tt.dead, j, "request %d: retry went back to the dead member", r)
				retry[j]++
			}
			assert.Equal(t, tt.wantFirst, first, "first picks per member")
			assert.Equal(t, tt.wantRetry, retry, "retry picks per member")
		})
	}
}

// TestRoundRobinRetryConcurrentFirstPicksExact checks the snapshot rule's
// concurrency claim (grpc-go's round_robin picker: one fetch-and-add per
// pick) with retries mixed in: goroutines that retry after every pick of
// one member still leave the first picks split exactly.
func TestRoundRobinRetryConcurrentFirstPicksExact(t *testing.T) {
	const goroutines, per = 8, 3000
	all := endpoints(1, 1, 1)
	p := NewRoundRobin().Picker(newSet(all, nil))
	counts := make([][]int, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		counts[g] = make([]int, len(all))
		wg.Go(func() {
			var tried Tried
			for range per {
				tried.Reset()
				i := p.Pick(nil, &tried)
				counts[g][i]++
				if i == 0 {
					tried.Add(all[0])
					if j := p.Pick(nil, &tried); j == 0 || j < 0 {
						t.Errorf("retry pick = %d; want b or c", j)
					}
				}
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
	assert.Equal(t, []int{8000, 8000, 8000}, total, "first picks per member")
}

// TestRoundRobinRetriesOfOneRequestInOrder checks that one request's
// successive retries go round the untried members in order from its turn,
// and that the next request's retries start one turn later.
func TestRoundRobinRetriesOfOneRequestInOrder(t *testing.T) {
	all := endpoints(1, 1, 1, 1)
	p := NewRoundRobin().Picker(newSet(all, nil))
	var tried Tried
	request := func() string {
		tried.Reset()
		i := p.Pick(nil, &tried)
		got := []string{name(all, i)}
		tried.Add(all[i])
		for {
			i := p.Pick(nil, &tried)
			if i < 0 {
				return strings.Join(got, " ")
			}
			got = append(got, name(all, i))
			tried.Add(all[i])
		}
	}
	assert.Equal(t, "a b c d", request(), "first request: turn 0")
	assert.Equal(t, "b c d a", request(), "second request: turn 1")
	assert.Equal(t, "c d a b", request(), "third request: turn 2")
}
