package sim

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/tinylb/lb/strategy"
)

// HashResult is the ring balance and remapping of the consistent hash over
// one name set.
type HashResult struct {
	Backends int
	Set      int     // name set T: backends are http://10.T.0.1:80 ...
	Keys     int     // keys hashed
	MaxAvg   float64 // most keys on one backend ÷ the mean
	MinAvg   float64 // fewest keys on one backend ÷ the mean
	// AddMoved is the fraction of keys that change backend when backend
	// n+1 joins (ideal 1/(n+1)); AddStray counts those that moved to
	// another backend than the new one (ideal 0).
	AddMoved float64
	AddStray int
	// RemoveMoved is the fraction that change backend when backend n
	// leaves the Set (ideal 1/n); RemoveStray counts keys that moved
	// although they were not on it (ideal 0).
	RemoveMoved float64
	RemoveStray int
	// DownDiffers counts keys whose backend differs between backend n
	// being marked down (left out of Set.Usable, the ring kept) and being
	// removed from the Set (ideal 0: both hand its keys to the next
	// member on the ring).
	DownDiffers int
}

// HashKeys returns the keys HashBalance places: key-0 … key-(n-1).
func HashKeys(n int) []string {
	ks := make([]string, n)
	for i := range ks {
		ks[i] = "key-" + strconv.Itoa(i)
	}
	return ks
}

// hashSet returns the Set of backends http://10.T.0.1:80 … 10.T.0.n:80,
// all usable unless down ≥ 0 names one to leave out of Usable.
func hashSet(t, n, down int) *strategy.Set {
	s := &strategy.Set{Scale: 1}
	for i := range n {
		s.All = append(s.All, &endpoint{key: fmt.Sprintf("http://10.%d.0.%d:80", t, i+1), w: 1})
		s.Weights = append(s.Weights, 1)
		if i != down {
			s.Usable = append(s.Usable, i)
		}
	}
	return s
}

// assign returns the backend key each key maps to under set, using the real
// picker of strategy.NewConsistentHash.
func assign(set *strategy.Set, keys []string) []string {
	p := strategy.NewConsistentHash(keyOf).Picker(set)
	req := &http.Request{Header: http.Header{}}
	var kv [1]string
	req.Header["X-Key"] = kv[:]
	out := make([]string, len(keys))
	for j, k := range keys {
		kv[0] = k
		i := p.Pick(req, nil)
		if i < 0 {
			panic("sim: consistent hash picked nothing")
		}
		out[j] = set.All[i].Key()
	}
	return out
}

// HashBalance measures name set t with n backends over keys.
func HashBalance(t, n int, keys []string) HashResult {
	r := HashResult{Backends: n, Set: t, Keys: len(keys)}
	base := assign(hashSet(t, n, -1), keys)
	count := map[string]int{}
	for _, b := range base {
		count[b]++
	}
	lo, hi := len(keys), 0
	for _, e := range hashSet(t, n, -1).All {
		c := count[e.Key()]
		lo, hi = min(lo, c), max(hi, c)
	}
	avg := float64(len(keys)) / float64(n)
	r.MaxAvg, r.MinAvg = float64(hi)/avg, float64(lo)/avg

	added := assign(hashSet(t, n+1, -1), keys)
	newKey := fmt.Sprintf("http://10.%d.0.%d:80", t, n+1)
	moved := 0
	for j := range keys {
		if added[j] != base[j] {
			moved++
			if added[j] != newKey {
				r.AddStray++
			}
		}
	}
	r.AddMoved = float64(moved) / float64(len(keys))

	removed := assign(hashSet(t, n-1, -1), keys)
	gone := fmt.Sprintf("http://10.%d.0.%d:80", t, n)
	moved = 0
	for j := range keys {
		if removed[j] != base[j] {
			moved++
			if base[j] != gone {
				r.RemoveStray++
			}
		}
	}
	r.RemoveMoved = float64(moved) / float64(len(keys))

	down := assign(hashSet(t, n, n-1), keys)
	for j := range keys {
		if down[j] != removed[j] {
			r.DownDiffers++
		}
	}
	return r
}
