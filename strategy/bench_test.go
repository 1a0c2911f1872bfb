package strategy

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
	"time"
)

// benchSizes are the member counts every strategy is measured at.
var benchSizes = []int{10, 100, 1000}

// benchKeys are requests with 16-byte X-Key headers, cycled through by the
// hash benchmarks so that the ring lookups vary.
var benchKeys = func() []*http.Request {
	rs := make([]*http.Request, 1024)
	for i := range rs {
		rs[i] = keyReq(fmt.Sprintf("user-%011d", i*7919))
	}
	return rs
}()

// benchPick measures Pick, followed by Done when the picker is an
// Observer, over n members of mixed weights, every one usable, serially and
// with b.RunParallel.
func benchPick(b *testing.B, newStrategy func() Strategy) {
	for _, n := range benchSizes {
		all := make([]Endpoint, n)
		for i := range all {
			all[i] = &testEP{key: fmt.Sprintf("http://10.0.%d.%d:80", i/250, i%250+1), w: 1 + i%3}
		}
		set := newSet(all, nil)
		set.MaxFails = 1
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			p := newStrategy().Picker(set)
			o, _ := p.(Observer)
			b.ReportAllocs()
			k := 0
			for b.Loop() {
				i := p.Pick(benchKeys[k&1023], nil)
				if o != nil {
					o.Done(i, Success)
				}
				k++
			}
		})
		b.Run(fmt.Sprint(n, "-parallel"), func(b *testing.B) {
			p := newStrategy().Picker(set)
			o, _ := p.(Observer)
			b.ReportAllocs()
			b.ResetTimer() // b.Loop does this for the serial case
			b.RunParallel(func(pb *testing.PB) {
				k := 0
				for pb.Next() {
					i := p.Pick(benchKeys[k&1023], nil)
					if o != nil {
						o.Done(i, Success)
					}
					k++
				}
			})
		})
	}
}

func BenchmarkRoundRobin(b *testing.B) {
	benchPick(b, func() Strategy { return NewRoundRobin() })
}

func BenchmarkSmoothWeighted(b *testing.B) {
	benchPick(b, func() Strategy { return NewSmoothWeighted() })
}

func BenchmarkLeastConn(b *testing.B) {
	benchPick(b, func() Strategy { return NewLeastConn() })
}

func BenchmarkLeastRequest(b *testing.B) {
	benchPick(b, func() Strategy { return newLR(b, LeastRequestConfig{}) })
}

// BenchmarkPeakEWMA includes reading the monotonic clock once per pick.
// Done, without a latency, only ends the request: see
// BenchmarkPeakEWMADoneAfter for the one that observes.
func BenchmarkPeakEWMA(b *testing.B) {
	benchPick(b, func() Strategy { return newPE(b, PeakEWMAConfig{}) })
}

// BenchmarkPeakEWMADoneAfter is a pick and the DoneAfter that observes its
// latency, with the clock read twice, at 10 members of mixed weights.
func BenchmarkPeakEWMADoneAfter(b *testing.B) {
	all := make([]Endpoint, 10)
	for i := range all {
		all[i] = &testEP{key: fmt.Sprintf("http://10.0.0.%d:80", i+1), w: 1 + i%3}
	}
	p := newPE(b, PeakEWMAConfig{}).Picker(newSet(all, nil))
	lo := p.(LatencyObserver)
	b.ReportAllocs()
	k := 0
	for b.Loop() {
		i := p.Pick(nil, nil)
		lo.DoneAfter(i, Success, time.Duration(1+k%64)*time.Millisecond)
		k++
	}
}

// BenchmarkConsistentHash includes the key func, which reads a 16-byte key
// from a request header, and hashing the key.
func BenchmarkConsistentHash(b *testing.B) {
	benchPick(b, func() Strategy { return NewConsistentHash(headerKey) })
}

// BenchmarkBoundedHash is ConsistentHash's benchmark for BoundedHash with
// c = 1.25: every Pick is followed by its Done, so the bound never binds
// and this is the cost of the counting on top of the ring.
func BenchmarkBoundedHash(b *testing.B) {
	benchPick(b, func() Strategy { return NewBoundedHash(headerKey, 1.25) })
}

// BenchmarkBoundedHashLoaded measures BoundedHash at 10 members of weight
// 1 with 1,000 requests of Zipf(1.1)-popular keys in flight, c = 1.1 and
// 1.25: each Pick is of a Zipf key and is followed by the Done of the
// oldest request, so the hot keys' homes are full and their picks walk.
func BenchmarkBoundedHashLoaded(b *testing.B) {
	set := newSet(hostEndpoints(10), nil)
	rng := rand.New(rand.NewPCG(1, 1))
	zipf := rand.NewZipf(rng, 1.1, 1, 9999)
	reqs := make([]*http.Request, 4096)
	for i := range reqs {
		reqs[i] = keyReq(fmt.Sprintf("user-%011d", zipf.Uint64()))
	}
	for _, c := range []float64{1.1, 1.25} {
		b.Run(fmt.Sprint(c), func(b *testing.B) {
			p := NewBoundedHash(headerKey, c).Picker(set)
			o := p.(Observer)
			const inflight = 1000
			ring := make([]int, inflight) // the requests in flight, oldest at k%inflight
			for k := range ring {
				ring[k] = p.Pick(reqs[k], nil)
			}
			b.ReportAllocs()
			k := 0
			for b.Loop() {
				o.Done(ring[k%inflight], Success)
				ring[k%inflight] = p.Pick(reqs[(k+inflight)&4095], nil)
				k++
			}
		})
	}
}

// peerKeyRequests carry, as their URL path, the keys that
// ../shared/bench/pick hashes for buraksezer/consistent, maglev and jump
// ("user-<i*7919>/session/<i>"), so that ConsistentHash/peer-keys compares
// with those figures like for like: a key that is already a string, hashed
// and looked up.
var peerKeyRequests = func() []*http.Request {
	rs := make([]*http.Request, 1024)
	for i := range rs {
		rs[i] = &http.Request{URL: &url.URL{Path: fmt.Sprintf("user-%d/session/%d", i*7919, i)}}
	}
	return rs
}()

// BenchmarkConsistentHashPeerKeys is ConsistentHash at 10 and 1,000
// members with the key taken from the URL path.
func BenchmarkConsistentHashPeerKeys(b *testing.B) {
	for _, n := range []int{10, 1000} {
		set := newSet(hostEndpoints(n), nil)
		p := NewConsistentHash(func(r *http.Request) string { return r.URL.Path }).Picker(set)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			k := 0
			for b.Loop() {
				p.Pick(peerKeyRequests[k&1023], nil)
				k++
			}
		})
	}
}

// BenchmarkConsistentHashRing measures building a ring, which happens only
// when members or their configured weights change.
func BenchmarkConsistentHashRing(b *testing.B) {
	for _, n := range benchSizes {
		all := hostEndpoints(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				newRing(all)
			}
		})
	}
}

// BenchmarkRetry measures a retry pick: one member already tried.
func BenchmarkRetry(b *testing.B) {
	all := hostEndpoints(10)
	set := newSet(all, nil)
	for _, s := range []struct {
		name string
		s    Strategy
	}{
		{"RoundRobin", NewRoundRobin()},
		{"SmoothWeighted", NewSmoothWeighted()},
		{"LeastConn", NewLeastConn()},
		{"ConsistentHash", NewConsistentHash(headerKey)},
		{"BoundedHash", NewBoundedHash(headerKey, 1.25)},
		{"LeastRequest", newLR(b, LeastRequestConfig{})},
		{"PeakEWMA", newPE(b, PeakEWMAConfig{})},
	} {
		b.Run(s.name, func(b *testing.B) {
			p := s.s.Picker(set)
			o, _ := p.(Observer)
			var tried Tried
			tried.Add(all[3])
			b.ReportAllocs()
			k := 0
			for b.Loop() {
				i := p.Pick(benchKeys[k&1023], &tried)
				if o != nil {
					o.Done(i, Success)
				}
				k++
			}
		})
	}
}

// BenchmarkBaselineAtomicAdd is the floor under every pick that shares a
// counter: one uncontended atomic add, which RoundRobin's Pick is plus a
// modulo and an index.
func BenchmarkBaselineAtomicAdd(b *testing.B) {
	var n atomic.Uint64
	for b.Loop() {
		n.Add(1)
	}
}
