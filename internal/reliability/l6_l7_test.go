package reliability

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/internal/faultkit"
)

// L6: hot reconfiguration. Backends are added, removed and replaced 50
// times a second under load. No GET fails; a removed backend gets no new
// request once Remove or Update returned (only the attempts already in
// flight then may still arrive); counters end at 0.
func TestL6_HotReconfiguration(t *testing.T) {
	e := newEnv(t, envConfig{n: 5})
	// Start with a, b, c in the pool; d and e are spares.
	for _, b := range e.backends[3:] {
		if err := e.pool.Remove(b.URL); err != nil {
			t.Fatal(err)
		}
	}
	type watch struct {
		removed  atomic.Bool
		inflight atomic.Int64 // attempts in flight when it was removed
		late     atomic.Int64 // arrivals after it was removed
	}
	watches := make([]*watch, len(e.backends))
	for i, b := range e.backends {
		w := &watch{}
		watches[i] = w
		b.OnRequest(func(*http.Request) {
			if w.removed.Load() {
				w.late.Add(1)
			}
		})
	}
	watches[3].removed.Store(true)
	watches[4].removed.Store(true)
	member := func(i int) *lb.Backend {
		m, ok := e.pool.Get(e.backends[i].URL)
		if ok {
			return m
		}
		return nil
	}
	var violations []string
	var vmu sync.Mutex
	check := func(i int) {
		w := watches[i]
		if late, in := w.late.Load(), w.inflight.Load(); late > in {
			vmu.Lock()
			violations = append(violations, fmt.Sprintf("%s got %d requests after its removal with %d in flight", e.backends[i].Name, late, in))
			vmu.Unlock()
		}
	}
	markRemoved := func(i int, _ *lb.Backend) {
		// Called right after Remove/Update returned. Attempts still in
		// flight on any earlier member for the same URL count too.
		var in int64
		for _, m := range e.members {
			if m.URL().Host == e.backends[i].Addr {
				in += m.Active()
			}
		}
		watches[i].inflight.Store(in)
		watches[i].late.Store(0)
		watches[i].removed.Store(true)
	}
	markAdded := func(i int) {
		check(i)
		watches[i].removed.Store(false)
	}

	ctx, stop := context.WithCancel(context.Background())
	var changes atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond) // 50 changes a second
		defer tick.Stop()
		for ctx.Err() == nil {
			<-tick.C
			in, out := []int{}, []int{}
			for i := range e.backends {
				if member(i) != nil {
					in = append(in, i)
				} else {
					out = append(out, i)
				}
			}
			switch op := rand.IntN(3); {
			case op == 0 && len(in) > 1: // Remove
				i := in[rand.IntN(len(in))]
				m := member(i)
				if err := e.pool.Remove(e.backends[i].URL); err != nil {
					t.Error(err)
				}
				markRemoved(i, m)
			case op == 1 && len(out) > 0: // Add
				i := out[rand.IntN(len(out))]
				markAdded(i)
				if err := e.pool.Add(e.member(e.backends[i].URL)); err != nil {
					t.Error(err)
				}
			default: // Update: a random non-empty subset, reordered
				var next []*lb.Backend
				var keep []int
				for _, i := range rand.Perm(len(e.backends)) {
					if rand.IntN(2) == 0 || len(keep) == 0 {
						keep = append(keep, i)
					}
				}
				olds := map[int]*lb.Backend{}
				for _, i := range in {
					olds[i] = member(i)
				}
				for _, i := range keep {
					if m := member(i); m != nil {
						next = append(next, m)
					} else {
						markAdded(i)
						next = append(next, e.member(e.backends[i].URL))
					}
				}
				if err := e.pool.Update(next...); err != nil {
					t.Error(err)
				}
				for i, m := range olds {
					if !contains2(keep, i) {
						markRemoved(i, m)
					}
				}
			}
			changes.Add(1)
		}
	}()
	e.client.Run(context.Background(), faultkit.Load{Workers: scale(8, 32), Duration: scale(1500*time.Millisecond, 10*time.Second),
		Next: func(w, i int) faultkit.Request { return faultkit.Request{N: int64(rand.IntN(4096))} }})
	stop()
	<-done
	for i := range e.backends {
		if watches[i].removed.Load() {
			check(i)
		}
	}
	for _, v := range violations {
		t.Errorf("L6: %s", v)
	}
	s := e.checkIntegrity(e.client.Attempts())
	if s.OK != s.Requests {
		t.Errorf("L6: %d of %d GETs failed during reconfiguration: %v", s.Requests-s.OK, s.Requests, s)
	}
	t.Logf("L6: %d pool changes under %d requests: %v", changes.Load(), s.Requests, s)
}

func contains2(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// L7: large bodies both ways pass intact without the balancer holding
// them (heap growth under 16 MiB beyond the retry buffer), an event
// stream is delivered event by event, and trailers arrive intact.
func TestL7_LargeBodiesAndStreaming(t *testing.T) {
	size := scale(int64(128<<20), int64(1<<30))
	if raceEnabled && !soak() {
		size = 32 << 20
	}
	e := newEnv(t, envConfig{n: 1})
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	runtime.GC()
	base := heap()
	var peak atomic.Uint64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
				if h := heap(); h > peak.Load() {
					peak.Store(h)
				}
			}
		}
	}()
	down := e.do(faultkit.Request{N: size})
	up := e.do(faultkit.Request{Method: http.MethodPut, Body: size, N: 10})
	close(stopSampling)
	<-sampled
	if !down.OK() {
		t.Errorf("L7: download of %d MiB: %d %v, %d bytes intact", size>>20, down.Status, down.Err, down.Received)
	}
	if !up.OK() || up.EchoSHA != up.SentSHA {
		t.Errorf("L7: upload of %d MiB: %d %v, SHA-256 at the backend %s, sent %s", size>>20, up.Status, up.Err, up.EchoSHA, up.SentSHA)
	}
	growth := int64(peak.Load()) - int64(base)
	if growth > 16<<20+1<<20 {
		t.Errorf("L7: heap grew by %d MiB while moving %d MiB each way", growth>>20, size>>20)
	}
	t.Logf("L7: %d MiB down in %v, up in %v; peak heap growth %.1f MiB", size>>20, down.Duration.Round(time.Millisecond), up.Duration.Round(time.Millisecond), float64(growth)/(1<<20))

	// Server-sent events: each event reaches the client promptly.
	events := scale(50, 500)
	req, _ := http.NewRequest("GET", e.front.URL+"/sse?events="+strconv.Itoa(events)+"&every=10ms", nil)
	resp, err := e.client.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	var worst time.Duration
	got := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			break
		}
		if !strings.HasPrefix(line, "data: ") {
			continue
		}
		var seq, ns int64
		fmt.Sscanf(line, "data: %d %d", &seq, &ns)
		if seq != int64(got) {
			t.Fatalf("L7: event %d arrived as number %d", seq, got)
		}
		got++
		worst = max(worst, time.Since(time.Unix(0, ns)))
	}
	if got != events {
		t.Errorf("L7: %d of %d events arrived", got, events)
	}
	if worst > 500*time.Millisecond {
		t.Errorf("L7: an event took %v to arrive (50 ms is the goal)", worst)
	}
	t.Logf("L7: %d events, slowest delivered in %v", got, worst)

	// Trailers.
	a := e.do(faultkit.Request{N: 1 << 20, Query: "trailer=1"})
	if !a.OK() || a.Trailer.Get(faultkit.TrailerBodySHA) != faultkit.BodySHA(a.ID, 1<<20) {
		t.Errorf("L7: trailer %q, want the body's SHA-256", a.Trailer.Get(faultkit.TrailerBodySHA))
	}
}

// L6 (full replacement): Update swapping every member for new ones, as a
// discovery source does in a rolling deploy, must not make a request in
// flight run out of backends.
func TestL6_UpdateReplacingEveryMember(t *testing.T) {
	e := newEnv(t, envConfig{n: 4})
	sets := [][]int{{0, 1}, {2, 3}}
	if err := e.pool.Update(e.member(e.backends[0].URL), e.member(e.backends[1].URL)); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan int)
	go func() {
		n := 0
		for ctx.Err() == nil {
			n++
			var next []*lb.Backend
			for _, i := range sets[n%2] {
				next = append(next, e.member(e.backends[i].URL))
			}
			if err := e.pool.Update(next...); err != nil {
				t.Error(err)
			}
			time.Sleep(time.Millisecond)
		}
		done <- n
	}()
	e.client.Run(context.Background(), faultkit.Load{Workers: 16, Duration: scale(time.Second, 10*time.Second),
		Next: func(w, i int) faultkit.Request { return faultkit.Request{N: 10} }})
	stop()
	n := <-done
	s := e.checkIntegrity(e.client.Attempts())
	if s.OK != s.Requests {
		t.Errorf("BUG(L6): %d of %d GETs failed while Update replaced every member %d times: %v", s.Requests-s.OK, s.Requests, n, s)
	}
}
