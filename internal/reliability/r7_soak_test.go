//go:build soak

package reliability

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
	"github.com/tinylb/lb/internal/faultkit"
)

var (
	r7Duration    = flag.Duration("r7.duration", 30*time.Minute, "length of the R7 soak")
	r7HeapProfile = flag.String("r7.heapprofile", "", "write heap profiles (after a full GC) to PREFIX-1m.pb.gz one minute in, PREFIX-end.pb.gz at the last sample under load, and PREFIX-after.pb.gz once the load stopped")
	r7HeapBound   = flag.Int64("r7.heapbound", 16<<20, "most the live heap may grow, in bytes, from one minute in to the end (load stopped, the test's records dropped)")
)

// writeHeapProfile writes a heap profile, after a full collection, to
// path.
func writeHeapProfile(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Errorf("R7: heap profile: %v", err)
		return
	}
	defer f.Close()
	runtime.GC()
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		t.Errorf("R7: heap profile: %v", err)
	}
	t.Logf("R7: heap profile %s", path)
}

// liveHeap is the live heap after two full collections (the second frees
// what the first moved to the sync.Pools' victim caches).
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// postWindow finds POST IDs that reached the backends more than once
// while keeping only recent IDs: the soak drains the backends' per-ID
// counts every 5 s into cur, and every r7Generation cur becomes prev and
// the older IDs are forgotten. Both arrivals of a duplicate happen within
// one request's life (the client gives up after 30 s), so an ID is checked
// against at least r7Generation of history, and the records stay bounded
// (keeping every ID of an 8-minute run cost ~100 MiB of heap).
type postWindow struct {
	prev, cur map[string]int
	ids       int // IDs seen
	dups      int
	first     string // first duplicated ID
}

const r7Generation = 30 * time.Second

func (w *postWindow) add(hits map[string]int) {
	if w.cur == nil {
		w.cur = make(map[string]int)
	}
	for id, n := range hits {
		had := w.prev[id] + w.cur[id]
		if had == 0 {
			w.ids++
		}
		w.cur[id] += n
		if had <= 1 && had+n > 1 {
			w.dups++
			if w.first == "" {
				w.first = id
			}
		}
	}
}

func (w *postWindow) rotate() { w.prev, w.cur = w.cur, make(map[string]int) }

// R7: the nightly soak. 128 clients of mixed traffic against 4 backends
// for -r7.duration, with a random fault every 5 s (kill and restart, reset
// mid-response, hang, stale keep-alive, 503s, resets after the request).
// I1 and I2 must hold throughout; counters end at 0; goroutines stay
// flat, and the live heap at the end (load stopped, the test's records
// dropped) is within -r7.heapbound of its value one minute in.
func TestR7_Soak(t *testing.T) {
	check := &health.HTTPCheck{Path: faultkit.HealthPath, Interval: 200 * time.Millisecond, Timeout: 150 * time.Millisecond}
	e := newEnv(t, envConfig{n: 4,
		backend:   func(int) faultkit.Config { return faultkit.Config{Lean: true} },
		transport: withHeaderTimeout(2 * time.Second),
		opts: []lb.Option{lb.WithHealthCheck(check), lb.WithPassiveHealth(health.Passive{MaxFails: 5, FailTimeout: 5 * time.Second}),
			lb.WithRetry(lb.RetryPolicy{Statuses: []int{503}})}})
	e.client.Keep = false
	var total, ok, errs, breaches, posts atomic.Int64
	var firstBreach atomic.Value
	e.client.Observe = func(a faultkit.Attempt) {
		total.Add(1)
		if a.OK() {
			ok.Add(1)
		} else if a.Err != nil {
			errs.Add(1)
		}
		if b := a.Breach(); b != "" {
			breaches.Add(1)
			firstBreach.CompareAndSwap(nil, b)
		}
		if a.Method == http.MethodPost {
			posts.Add(1)
		}
	}
	// The test's own records stay bounded: the lean backends count POSTs
	// only, and the soak drains those counts into a window, its dial log
	// after checking it (I3), and the balancer's log, every 5 s.
	var window postWindow
	var logBytes int
	dialedOutside := false
	drain := func() {
		for _, b := range e.backends {
			window.add(b.TakeHits())
		}
		if out := e.dialer.Outside(e.addrs()...); len(out) > 0 && !dialedOutside {
			dialedOutside = true
			t.Errorf("I3: the balancer dialed outside the pool: %v", out)
		}
		e.dialer.Reset()
		logBytes += e.logs.reset()
	}
	ctx, stop := context.WithTimeout(context.Background(), *r7Duration)
	defer stop()
	faults := 0
	var samples []string
	var g0 int
	var base uint64 // live heap one minute in
	var baseN int64 // requests by then
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.client.Run(ctx, faultkit.Load{Workers: 128, Next: mixedRequest(256 << 10)})
	}()
	heapInuse := func() uint64 {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	var victim *faultkit.Backend
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
		if ctx.Err() != nil {
			break
		}
		// Undo the last fault, then start a new one.
		if victim != nil {
			victim.SetBehavior(faultkit.Behavior{})
			victim.SetFault(faultkit.Fault{})
			victim.Release()
			if !victim.Running() {
				victim.Restart()
			}
		}
		victim = e.backends[rand.IntN(len(e.backends))]
		switch rand.IntN(6) {
		case 0:
			victim.KillReset()
		case 1:
			victim.SetBehavior(faultkit.Behavior{ResetAfterFraction: 0.4})
		case 2:
			victim.SetFault(faultkit.Fault{Kind: faultkit.Hang})
		case 3:
			victim.SetBehavior(faultkit.Behavior{CloseAfterResponse: true})
		case 4:
			victim.SetBehavior(faultkit.Behavior{Status: 503})
		case 5:
			victim.SetFault(faultkit.Fault{Kind: faultkit.ResetAfterRead})
		}
		faults++
		drain()
		if (i+1)%int(r7Generation/(5*time.Second)) == 0 {
			window.rotate()
		}
		if *r7HeapProfile != "" {
			dl, _ := ctx.Deadline()
			switch {
			case i == 12:
				writeHeapProfile(t, *r7HeapProfile+"-1m.pb.gz")
			case time.Until(dl) < 5*time.Second:
				writeHeapProfile(t, *r7HeapProfile+"-end.pb.gz")
			}
		}
		if i%12 == 0 {
			// Goroutines / heap in use (garbage included) / live heap.
			g, h := runtime.NumGoroutine(), heapInuse()
			live := liveHeap()
			if g0 == 0 && i > 0 {
				g0, base, baseN = g, live, total.Load()
			}
			samples = append(samples, fmt.Sprintf("%d/%.0f/%.1fMiB", g, float64(h)/(1<<20), float64(live)/(1<<20)))
		}
	}
	<-done
	if victim != nil {
		victim.Release()
		victim.SetBehavior(faultkit.Behavior{})
		victim.SetFault(faultkit.Fault{})
		victim.Restart()
	}
	if n := breaches.Load(); n > 0 {
		t.Errorf("R7: %d I1 breaches, first: %v", n, firstBreach.Load())
	}
	drain()
	if window.dups > 0 {
		t.Errorf("R7: %d POSTs reached the backends more than once, first: %s", window.dups, window.first)
	}
	ids, dups := window.ids, window.dups
	window = postWindow{} // the test's records go: what stays is the balancer's, and the rig's
	if *r7HeapProfile != "" {
		writeHeapProfile(t, *r7HeapProfile+"-after.pb.gz")
	}
	g1, h1 := runtime.NumGoroutine(), liveHeap()
	if g0 > 0 && g1 > g0*2+50 {
		t.Errorf("R7: goroutines grew from %d to %d", g0, g1)
	}
	growth, perRequest := int64(0), 0.0
	if baseN > 0 {
		growth = int64(h1) - int64(base)
		perRequest = float64(growth) / float64(total.Load()-baseN)
		assert.Less(t, growth, *r7HeapBound, "R7: the live heap grew by %.1f MiB from one minute in to the end, %.1f bytes per request: something is kept per request",
			float64(growth)/(1<<20), perRequest)
	}
	t.Logf("R7: %v, 128 clients, %d faults: %d requests (%d POST, %d POST IDs at the backends), %d ok, %d visible errors, %d breaches, %d duplicated POSTs, %d KiB of balancer log; goroutines/heap in use/live heap every minute: %v; live heap %.1f MiB one minute in, %.1f MiB at the end with the load stopped (%+.1f MiB, %.1f bytes per request), %d goroutines",
		*r7Duration, faults, total.Load(), posts.Load(), ids, ok.Load(), errs.Load(), breaches.Load(), dups, logBytes>>10, samples,
		float64(base)/(1<<20), float64(h1)/(1<<20), float64(growth)/(1<<20), perRequest, g1)
}

// reset forgets the log output collected so far and returns its length:
// the soak drops it as it goes, so that it stays bounded.
func (l *logBuffer) reset() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.buf.Len()
	l.buf = strings.Builder{}
	return n
}
