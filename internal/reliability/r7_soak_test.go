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
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
	"github.com/tinylb/lb/internal/faultkit"
)

var (
	r7Duration    = flag.Duration("r7.duration", 30*time.Minute, "length of the R7 soak")
	r7HeapProfile = flag.String("r7.heapprofile", "", "write heap profiles (after a GC) to PREFIX-1m.pb.gz, one minute in, and PREFIX-end.pb.gz, at the last sample under load")
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
	if err := pprof.WriteHeapProfile(f); err != nil {
		t.Errorf("R7: heap profile: %v", err)
	}
	t.Logf("R7: heap profile %s", path)
}

// R7: the nightly soak. 128 clients of mixed traffic against 4 backends
// for -r7.duration, with a random fault every 5 s (kill and restart, reset
// mid-response, hang, stale keep-alive, 503s, resets after the request).
// I1 and I2 must hold throughout; counters end at 0; goroutines and heap
// stay flat.
func TestR7_Soak(t *testing.T) {
	check := &health.HTTPCheck{Path: faultkit.HealthPath, Interval: 200 * time.Millisecond, Timeout: 150 * time.Millisecond}
	e := newEnv(t, envConfig{n: 4,
		backend:   func(int) faultkit.Config { return faultkit.Config{Lean: true} },
		transport: withHeaderTimeout(2 * time.Second),
		opts: []lb.Option{lb.WithHealthCheck(check), lb.WithPassiveHealth(health.Passive{MaxFails: 5, FailTimeout: 5 * time.Second}),
			lb.WithRetry(lb.RetryPolicy{Statuses: []int{503}})}})
	e.client.Keep = false
	var total, ok, errs, breaches, posts atomic.Int64
	var pmu sync.Mutex
	postIDs := map[string]bool{}
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
			pmu.Lock()
			postIDs[a.ID] = true
			pmu.Unlock()
		}
	}
	ctx, stop := context.WithTimeout(context.Background(), *r7Duration)
	defer stop()
	faults := 0
	var samples []string
	var g0, h0 int
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.client.Run(ctx, faultkit.Load{Workers: 128, Next: mixedRequest(256 << 10)})
	}()
	heapMiB := func() int {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int(ms.HeapInuse >> 20)
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
			g, h := runtime.NumGoroutine(), heapMiB()
			if g0 == 0 && i > 0 {
				g0, h0 = g, h
			}
			samples = append(samples, fmt.Sprintf("%d/%dMiB", g, h))
		}
	}
	<-done
	if victim != nil {
		victim.Release()
		victim.SetBehavior(faultkit.Behavior{})
		victim.SetFault(faultkit.Fault{})
		victim.Restart()
	}
	if *r7HeapProfile != "" {
		writeHeapProfile(t, *r7HeapProfile+"-after.pb.gz")
	}
	if n := breaches.Load(); n > 0 {
		t.Errorf("R7: %d I1 breaches, first: %v", n, firstBreach.Load())
	}
	hits := map[string]int{}
	for _, b := range e.backends {
		for id, n := range b.HitMap() {
			hits[id] += n
		}
	}
	dups := 0
	for id := range postIDs {
		if hits[id] > 1 {
			dups++
		}
	}
	if dups > 0 {
		t.Errorf("R7: %d POSTs reached the backends more than once", dups)
	}
	g1, h1 := runtime.NumGoroutine(), heapMiB()
	if g0 > 0 && g1 > g0*2+50 {
		t.Errorf("R7: goroutines grew from %d to %d", g0, g1)
	}
	t.Logf("R7: %v, 128 clients, %d faults: %d requests (%d POST), %d ok, %d visible errors, %d breaches, %d duplicated POSTs; goroutines/heap every minute: %v (start %d/%dMiB, end %d/%dMiB)",
		*r7Duration, faults, total.Load(), posts.Load(), ok.Load(), errs.Load(), breaches.Load(), dups, samples, g0, h0, g1, h1)
}
