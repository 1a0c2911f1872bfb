package sim

import (
	"math"
	"net/http"

	"github.com/tinylb/lb/strategy"
)

// HotConfig is the hot-key workload: requests whose keys follow a Zipf
// law go through a hash strategy to backends of equal capacity. Each
// backend serves Workers requests at once (a thread pool), so that the
// requests in flight, which HAProxy's hash-balance-factor bounds, number
// in the tens per backend and a capacity factor c acts in steps of a few
// percent rather than of whole requests.
type HotConfig struct {
	Backends int
	Workers  int     // requests served at once per backend
	MeanMS   float64 // mean service time, ms
	Load     float64 // fraction of the total capacity
	Zipf     float64 // exponent s of the key popularity, P(k) ∝ (1+k)^−s
	Keys     int     // distinct keys
	Requests int
	Warmup   int
	Seed     uint64
	Factors  []float64 // capacity factors c of the bounded-load policies
}

// DefaultHotKeys is 10 backends × 16 workers, mean 16 ms (1000 req/s
// each), at 70% load: 7000 req/s over 10 000 keys with Zipf s = 1.1, the
// hot-key setting of the design notes' §5.4, and c = 1.1, 1.25, 1.5.
func DefaultHotKeys() HotConfig {
	return HotConfig{Backends: 10, Workers: 16, MeanMS: 16, Load: 0.7, Zipf: 1.1, Keys: 10_000,
		Requests: 200_000, Warmup: 20_000, Seed: 1, Factors: []float64{1.1, 1.25, 1.5}}
}

// Capacity is the total service rate, requests per second.
func (hc HotConfig) Capacity() float64 {
	return float64(hc.Backends*hc.Workers) * 1000 / hc.MeanMS
}

// workload has backends extra backends beyond hc.Backends at hc's arrival
// rate: a backend joining adds capacity, the traffic stays.
func (hc HotConfig) workload(extra int) workload {
	w := workload{rate: hc.Load * hc.Capacity(), instances: 1, requests: hc.Requests, warmup: hc.Warmup, seed: hc.Seed,
		zipf: newZipfKeys(hc.Zipf, hc.Keys), record: true}
	for range hc.Backends + extra {
		w.backends = append(w.backends, backendSpec{mean: hc.MeanMS / 1000, workers: hc.Workers, slowAt: math.Inf(1), slowBy: 1})
	}
	return w
}

// HotKeyPolicies returns the plain consistent hash and a bounded-load hash
// per capacity factor.
func HotKeyPolicies(hc HotConfig) []Policy {
	ps := append([]Policy(nil), hashLineup...)
	for _, c := range hc.Factors {
		ps = append(ps, boundedPolicies(c)...)
	}
	return ps
}

// HotResult is one hash policy under a HotConfig.
type HotResult struct {
	Result
	Factor float64 // c, 0 for the plain ring
	// ShareMaxAvg is the most requests sent to one backend ÷ the mean.
	ShareMaxAvg float64
	// InFlightMaxAvg is Result.Imbalance: the mean over arrivals of the
	// most requests in flight at one backend ÷ the mean in flight, the
	// quantity a bounded-load hash keeps at or below about c.
	InFlightMaxAvg float64
	// Moved is the fraction of the measured requests (same arrivals,
	// keys and service draws) that a backend joining sends to another
	// backend than before; Ideal the new backend's fair share 1/(n+1).
	Moved, MovedIdeal float64
	// KeysMoved is the fraction of the keys requested whose most frequent
	// backend changes when the backend joins.
	KeysMoved float64
	// OffFirst is the fraction of the measured requests sent to another
	// backend than the plain ring's choice for their key (the ring of
	// strategy.ConsistentHash, which BoundedHash shares).
	OffFirst float64
	// Spread is the mean number of backends a key's requests went to,
	// weighted by requests (1 for a plain ring).
	Spread float64
}

// RunHotKeys simulates p under hc, and again with one more backend.
func RunHotKeys(hc HotConfig, p Policy) HotResult {
	a := run(hc.workload(0), p)
	b := run(hc.workload(1), p)
	r := HotResult{Result: a.result(p), Factor: p.Factor}
	r.OffFirst = offFirst(a)
	r.Load = hc.Load
	r.ShareMaxAvg = maxOverMean(a.counts)
	r.InFlightMaxAvg = r.Imbalance
	moved := 0
	for k := range a.picks {
		if a.picks[k] != b.picks[k] {
			moved++
		}
	}
	r.Moved = float64(moved) / float64(len(a.picks))
	r.MovedIdeal = 1 / float64(hc.Backends+1)
	ma, sa := modal(a, hc.Keys, hc.Backends)
	mb, _ := modal(b, hc.Keys, hc.Backends+1)
	seen, changed := 0, 0
	for k := range ma {
		if ma[k] >= 0 {
			seen++
			if ma[k] != mb[k] {
				changed++
			}
		}
	}
	r.KeysMoved = float64(changed) / float64(seen)
	r.Spread = sa
	return r
}

// offFirst returns the fraction of e's measured requests that did not go
// to their key's backend on the plain ring.
func offFirst(e *engine) float64 {
	set := e.inst[0].set
	pk := strategy.NewConsistentHash(keyOf).Picker(set)
	req := &http.Request{Header: http.Header{}}
	var kv [1]string
	req.Header["X-Key"] = kv[:]
	first := make([]int32, len(e.w.zipf.names))
	for k := range first {
		kv[0] = e.w.zipf.names[k]
		first[k] = int32(pk.Pick(req, nil))
	}
	off := 0
	for k, b := range e.picks {
		if first[e.keyIdx[k]] != b {
			off++
		}
	}
	return float64(off) / float64(len(e.picks))
}

// modal returns each key's most frequent backend (−1 for keys never
// requested) and the request-weighted mean number of backends per key.
func modal(e *engine, keys, n int) ([]int32, float64) {
	cnt := make([]int32, keys*n)
	for k, b := range e.picks {
		cnt[int(e.keyIdx[k])*n+int(b)]++
	}
	out := make([]int32, keys)
	var spread float64
	for key := range keys {
		best, tot, used := int32(-1), int32(0), 0
		for b := range n {
			c := cnt[key*n+b]
			if c > 0 {
				used++
				tot += c
				if best < 0 || c > cnt[key*n+int(best)] {
					best = int32(b)
				}
			}
		}
		out[key] = best
		spread += float64(tot) * float64(used)
	}
	return out, spread / float64(len(e.picks))
}

// maxOverMean is max(xs) ÷ mean(xs).
func maxOverMean(xs []int) float64 {
	hi, sum := 0, 0
	for _, x := range xs {
		hi, sum = max(hi, x), sum+x
	}
	return float64(hi) * float64(len(xs)) / float64(sum)
}
