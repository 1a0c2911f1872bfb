package discovery_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/discovery"
)

// BenchmarkWatchApply measures one set of 1,000 targets going from the
// source's push to the pool (a tenth of them new each time, as in a
// rolling restart), with a balancer over the pool rebuilding its ring.
func BenchmarkWatchApply(b *testing.B) {
	const n = 1000
	sets := make([][]discovery.Target, 10)
	for s := range sets {
		for i := range n {
			port := 1 + i
			if i%10 == s {
				port += n // this tenth differs in each set
			}
			sets[s] = append(sets[s], discovery.Target{URL: fmt.Sprintf("http://127.0.0.1:%d", port)})
		}
	}
	pool := &lb.Pool{}
	bal := lb.New(pool, lb.ConsistentHash(lb.HeaderKey("X-User")))
	defer bal.Close()
	src := newFeed()
	w := discovery.Watch(context.Background(), src, pool, discovery.WithDebounce(0))
	defer w.Close()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		want := w.Stats().Updates + 1
		src.ch <- push{set: sets[i%len(sets)]}
		for w.Stats().Updates < want {
			time.Sleep(10 * time.Microsecond)
		}
	}
}
