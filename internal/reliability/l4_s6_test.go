package reliability

import (
	"context"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinylb/lb/internal/faultkit"
)

// mixedRequest is L4's request mix: 70% GET, 25% POST of 1 KiB up to
// maxPost, 5% streamed GET.
func mixedRequest(maxPost int64) func(w, i int) faultkit.Request {
	return func(w, i int) faultkit.Request {
		switch p := rand.IntN(100); {
		case p < 70:
			return faultkit.Request{N: int64(rand.IntN(16 << 10))}
		case p < 95:
			return faultkit.Request{Body: 1<<10 + rand.Int64N(maxPost-1<<10), N: int64(rand.IntN(4 << 10))}
		default:
			return faultkit.Request{N: int64(rand.IntN(256 << 10)), Stream: true}
		}
	}
}

// L4: integrity under load. Every response carries exactly its own bytes
// and ID, every POST reaches exactly one backend, with its body intact.
func TestL4_IntegritySoak(t *testing.T) {
	e := newEnv(t, envConfig{n: 3})
	workers := scale(16, 64)
	dur := scale(2*time.Second, 20*time.Second)
	maxPost := scale(int64(256<<10), int64(1<<20))
	n := e.client.Run(context.Background(), faultkit.Load{Workers: workers, Duration: dur, Next: mixedRequest(maxPost)})
	as := e.client.Attempts()
	s := e.checkIntegrity(as)
	if s.OK != s.Requests {
		t.Errorf("L4: %d of %d requests failed: %v", s.Requests-s.OK, s.Requests, s)
	}
	posts := 0
	for _, a := range as {
		if a.Method == http.MethodPost {
			posts++
			if h := e.hits(a.ID); h != 1 {
				t.Errorf("L4: POST %s reached the backends %d times", a.ID, h)
			}
		}
	}
	t.Logf("L4: %d requests (%d POST) by %d clients in %v: %v; latency %s", n, posts, workers, dur, s, latencies(as))
	e.assertContained()
}

// latencies summarises attempt durations.
func latencies(as []faultkit.Attempt) string {
	if len(as) == 0 {
		return "-"
	}
	ds := make([]time.Duration, len(as))
	for i, a := range as {
		ds[i] = a.Duration
	}
	slices.Sort(ds)
	q := func(f float64) time.Duration { return ds[int(f*float64(len(ds)-1))].Round(10 * time.Microsecond) }
	return "p50 " + q(0.5).String() + " p99 " + q(0.99).String() + " max " + q(1).String()
}

// S6: an attacker pipelines desync payloads on its own connections while
// 16 victims send normal traffic. Every victim answer carries the
// victim's own ID and bytes, and nothing reaches /smuggled.
func TestS6_CrossClientIsolationUnderAttack(t *testing.T) {
	e := newEnv(t, envConfig{n: 2})
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	payloads := smugglePayloads()
	var sent int
	var mu sync.Mutex
	for w := range 2 {
		wg.Go(func() {
			for i := w; ctx.Err() == nil; i++ {
				p := payloads[i%len(payloads)]
				// Several copies back to back on one connection.
				raw := strings.Repeat(p.raw, 3)
				faultkit.RawExchange(e.front.Addr, []byte(raw), 50*time.Millisecond)
				mu.Lock()
				sent++
				mu.Unlock()
			}
		})
	}
	workers := 16
	dur := scale(1500*time.Millisecond, 10*time.Second)
	e.client.Run(ctx, faultkit.Load{Workers: workers, Duration: dur, Next: mixedRequest(64 << 10)})
	stop()
	wg.Wait()
	as := e.client.Attempts()
	s := e.checkIntegrity(as)
	if s.OK != s.Requests {
		t.Errorf("S6: %d of %d victim requests failed: %v", s.Requests-s.OK, s.Requests, s)
	}
	for _, b := range e.backends {
		if n := b.Path("/smuggled"); n > 0 {
			t.Errorf("S6: %d requests reached /smuggled on %s", n, b.Name)
		}
		if n := b.Hits("smuggled"); n > 0 {
			t.Errorf("S6: the hidden request reached %s %d times", b.Name, n)
		}
	}
	t.Logf("S6: %d attack connections, %d victim requests: %v", sent, len(as), s)
	e.assertContained()
}
