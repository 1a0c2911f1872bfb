package strategy

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// ringStats measures a ring as §4.3 does: keys key-0 ... key-<keys-1>
// over n servers http://10.0.0.1:80 ... http://10.0.0.<n>:80 of weight 1,
// then with 10.0.0.<n+1>:80 added, then with 10.0.0.<n>:80 removed.
type ringStats struct {
	n, keys        int
	maxAvg, minAvg float64 // busiest and idlest member's keys over the mean
	movedAdd       float64 // fraction of keys that moved when one was added
	movedRemove    float64 // fraction of keys that moved when one was removed
	addToNew       bool    // every key that moved on the add went to the new member
}

func measureRing(n, keys int) ringStats {
	var cur string
	key := func(*http.Request) string { return cur }
	all := hostEndpoints(n + 1)
	base := NewConsistentHash(key).Picker(newSet(all[:n], nil))
	added := NewConsistentHash(key).Picker(newSet(all, nil))
	removed := NewConsistentHash(key).Picker(newSet(all[:n-1], nil))

	st := ringStats{n: n, keys: keys, addToNew: true}
	counts := make([]int, n)
	moveAdd, moveRemove := 0, 0
	buf := []byte("key-")
	for k := range keys {
		buf = strconv.AppendInt(buf[:4], int64(k), 10)
		cur = string(buf)
		i := base.Pick(nil, nil)
		counts[i]++
		if j := added.Pick(nil, nil); j != i {
			moveAdd++
			st.addToNew = st.addToNew && j == n
		}
		if j := removed.Pick(nil, nil); j != i {
			moveRemove++
		}
	}
	lo, hi := counts[0], counts[0]
	for _, c := range counts {
		lo, hi = min(lo, c), max(hi, c)
	}
	avg := float64(keys) / float64(n)
	st.maxAvg, st.minAvg = float64(hi)/avg, float64(lo)/avg
	st.movedAdd = float64(moveAdd) / float64(keys)
	st.movedRemove = float64(moveRemove) / float64(keys)
	return st
}

// statsKeys is the number of keys §4.3 uses, fewer in short mode.
func statsKeys() int {
	if testing.Short() {
		return 200_000
	}
	return 1_000_000
}

// TestConsistentHashStatsTable prints, under -v, the §4.3 measurement of
// our ring as a markdown table for the docs.
func TestConsistentHashStatsTable(t *testing.T) {
	var b strings.Builder
	fmt.Fprintf(&b, "\nketama ring, %d points per weight unit, %d keys key-0...key-%d (algorithms.md §4.3):\n\n",
		pointsPerWeight, statsKeys(), statsKeys()-1)
	b.WriteString("| backends | max/avg | min/avg | moved on add (ideal) | moved on remove (ideal) |\n")
	b.WriteString("|---|---|---|---|---|\n")
	for _, n := range []int{10, 100} {
		s := measureRing(n, statsKeys())
		fmt.Fprintf(&b, "| %d | %.3f | %.3f | %.2f%% (%.2f%%) | %.2f%% (%.2f%%) |\n",
			n, s.maxAvg, s.minAvg,
			100*s.movedAdd, 100/float64(n+1), 100*s.movedRemove, 100/float64(n))
	}
	t.Log(b.String())
}
