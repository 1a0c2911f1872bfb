package lb_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
)

// countingRT is a RoundTripper that counts the requests it carries.
type countingRT struct {
	base *http.Transport
	n    atomic.Int64
}

func (c *countingRT) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.base.RoundTrip(r)
}

// TestContract runs the program of the contract, with local
// backends, and checks what its comments promise.
func TestContract(t *testing.T) {
	t.Parallel()
	ua := startUpstream(t, "a", nil)
	ub := startUpstream(t, "b", nil)
	uc := startUpstream(t, "c", nil)

	a, err := lb.NewBackend(ua.url, lb.WithWeight(5)) // error for bad URL or weight
	if err != nil {
		t.Fatal(err)
	}
	b, _ := lb.NewBackend(ub.url) // weight 1 by default
	if b.Weight() != 1 {
		t.Errorf("default weight %d; want 1", b.Weight())
	}
	pool, err := lb.NewPool(a, b) // error on duplicate URLs
	if err != nil {
		t.Fatal(err)
	}
	c, _ := lb.NewBackend(uc.url)
	err = pool.Add(c) // at runtime, safe under traffic
	if err != nil {
		t.Fatal(err)
	}
	err = pool.Remove(ub.url) // error if unknown
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.Remove(ub.url); !errors.Is(err, lb.ErrUnknownBackend) {
		t.Errorf("Remove(unknown) = %v; want ErrUnknownBackend", err)
	}
	var urls []string
	for _, be := range pool.Backends() {
		var u *url.URL = be.URL()
		var alive bool = be.Alive()
		if !alive {
			t.Errorf("%s not alive", u)
		}
		urls = append(urls, u.String())
	}
	if got, want := strings.Join(urls, " "), ua.url+" "+uc.url; got != want {
		t.Errorf("Backends() = %s; want %s", got, want)
	}

	bal := lb.New(pool, lb.SmoothWeighted()) // *lb.Balancer: an http.Handler and an io.Closer
	var _ http.Handler = bal
	var _ io.Closer = bal
	mux := http.NewServeMux()
	mux.Handle("/api/", http.StripPrefix("/api", bal))
	g := serveGateway(t, bal, mux) // closes bal when the test ends

	// a has weight 5, c weight 1: a fresh smooth weighted balancer sends
	// a a a c a a, through the /api/ prefix, which the backends do not see.
	var got []string
	for i := range 12 {
		id := fmt.Sprintf("contract-%d", i)
		r := g.mustDo(t, http.MethodGet, "/api/items?x=1", id, nil, nil)
		if r.status != http.StatusOK {
			t.Fatalf("GET /api/items: status %d", r.status)
		}
		name, _, _ := strings.Cut(string(r.body), "|")
		got = append(got, name)
		up := map[string]*upstream{"a": ua, "c": uc}[name]
		if up == nil {
			t.Fatalf("served by %q", name)
		}
		if s := up.get(t, id); s.uri != "/items?x=1" {
			t.Errorf("backend saw %q; want /items?x=1", s.uri)
		}
	}
	if s, want := strings.Join(got, " "), "a a a c a a a a a c a a"; s != want {
		t.Errorf("picks %s; want %s", s, want)
	}

	for _, s := range []lb.Strategy{lb.RoundRobin(), lb.SmoothWeighted(), lb.LeastConn(), lb.ConsistentHash(lb.HeaderKey("X-User")), lb.LeastRequest(), lb.PeakEWMA()} {
		if s == nil {
			t.Error("a strategy constructor returned nil")
		}
	}
	var _ lb.KeyFunc = func(*http.Request) string { return "" }
	var _ lb.KeyFunc = lb.HeaderKey("X-User")

	// WithTransport: every attempt goes through the given RoundTripper.
	rt := &countingRT{base: &http.Transport{}}
	t.Cleanup(rt.base.CloseIdleConnections)
	pool2, _ := poolOf(t, ua.url, uc.url)
	g2 := startGateway(t, pool2, lb.RoundRobin(), lb.WithTransport(rt))
	if s := g2.sequence(t, 4); s != "a c a c" {
		t.Errorf("round robin with a custom transport: %s; want a c a c", s)
	}
	if n := rt.n.Load(); n != 4 {
		t.Errorf("custom RoundTripper carried %d requests; want 4", n)
	}
}

// spread sends clients×each concurrent GETs and returns how many each
// backend served; it fails the test on any error.
func spread(t *testing.T, g *gateway, clients, each int, hdr func(w, i int) http.Header) map[string]int {
	t.Helper()
	var (
		mu     sync.Mutex
		counts = map[string]int{}
		errs   []string
		wg     sync.WaitGroup
	)
	for w := range clients {
		wg.Go(func() {
			for i := range each {
				var h http.Header
				if hdr != nil {
					h = hdr(w, i)
				}
				r, err := g.do(context.Background(), http.MethodGet, "/", "", nil, h)
				mu.Lock()
				switch {
				case err != nil:
					errs = append(errs, err.Error())
				case r.status != http.StatusOK:
					errs = append(errs, fmt.Sprintf("status %d", r.status))
				default:
					name, _, _ := strings.Cut(string(r.body), "|")
					counts[name]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d requests failed; first: %s", len(errs), errs[0])
	}
	return counts
}

func TestRoundRobinExactSplitConcurrent(t *testing.T) {
	t.Parallel()
	ups := []*upstream{startUpstream(t, "a", nil), startUpstream(t, "b", nil), startUpstream(t, "c", nil)}
	pool, _ := poolOf(t, urlsOf(ups...)...)
	g := startGateway(t, pool, lb.RoundRobin())
	counts := spread(t, g, 10, 30, nil)
	for _, u := range ups {
		if counts[u.name] != 100 {
			t.Errorf("round robin, 10 clients x 30 requests: %v; want exactly 100 each", counts)
			break
		}
	}
}

// TestRoundRobinDownShareSpreadEvenly: a backend taken out of rotation has
// its share spread evenly over the others (algorithms.md §2), not given to
// its neighbour.
func TestRoundRobinDownShareSpreadEvenly(t *testing.T) {
	t.Parallel()
	a, c, d := startUpstream(t, "a", nil), startUpstream(t, "c", nil), startUpstream(t, "d", nil)
	pool, bes := poolOf(t, a.url, refusingURL(t), c.url, d.url)
	g := startGateway(t, pool, lb.RoundRobin(),
		lb.WithPassiveHealth(&health.Passive{MaxFails: 1, FailTimeout: time.Minute}))
	// The second request goes to the dead backend first, is retried, and
	// the failure takes it out.
	g.served(t, nil)
	g.served(t, nil)
	if bes[1].Alive() {
		t.Fatal("the refusing backend is still alive after a refused attempt with MaxFails 1")
	}
	counts := map[string]int{}
	for range 30 {
		counts[g.served(t, nil)]++
	}
	if counts["a"] != 10 || counts["c"] != 10 || counts["d"] != 10 {
		t.Errorf("30 requests with the second of four backends down: %v; want 10 each for a, c, d", counts)
	}
}

func TestSmoothWeightedSequenceOverHTTP(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		weights []int
		want    string // one cycle
	}{
		{[]int{5, 1, 1}, "a a b a c a a"},
		{[]int{4, 2, 1}, "a b a c a b a"},
		{[]int{1, 1, 1}, "a b c"},
		{[]int{3, 1}, "a a b a"},
		{[]int{2, 3, 5}, "c b a c b c c a b c"},
	} {
		t.Run(fmt.Sprint(tc.weights), func(t *testing.T) {
			t.Parallel()
			var bes []*lb.Backend
			for i, w := range tc.weights {
				up := startUpstream(t, string(rune('a'+i)), nil)
				bes = append(bes, backendFor(t, up.url, lb.WithWeight(w)))
			}
			pool, err := lb.NewPool(bes...)
			if err != nil {
				t.Fatal(err)
			}
			g := startGateway(t, pool, lb.SmoothWeighted())
			n := len(strings.Fields(tc.want))
			want := strings.TrimSpace(strings.Repeat(tc.want+" ", 3))
			if got := g.sequence(t, 3*n); got != want {
				t.Errorf("weights %v over HTTP: %s; want %s", tc.weights, got, want)
			}
		})
	}
}

func TestSmoothWeightedConcurrentTotals(t *testing.T) {
	t.Parallel()
	ua, ub, uc := startUpstream(t, "a", nil), startUpstream(t, "b", nil), startUpstream(t, "c", nil)
	pool, err := lb.NewPool(backendFor(t, ua.url, lb.WithWeight(5)), backendFor(t, ub.url), backendFor(t, uc.url))
	if err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, pool, lb.SmoothWeighted())
	counts := spread(t, g, 10, 70, nil)
	if counts["a"] != 500 || counts["b"] != 100 || counts["c"] != 100 {
		t.Errorf("weights 5/1/1, 700 concurrent requests: %v; want a:500 b:100 c:100", counts)
	}
}

// blocking returns a handler that reports its name on arrived and answers
// only once release is closed (or the request is cancelled).
func blocking(name string, arrived chan<- string, release <-chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- name:
		case <-r.Context().Done():
			return
		}
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		answerName(w, r, name)
	}
}

// TestLeastConnBurstSpreads sends a burst of concurrent requests to slow
// backends: choosing a backend and counting the request is one step, so
// the burst spreads by weight instead of piling onto one backend.
func TestLeastConnBurstSpreads(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		weights, want []int
	}{
		{[]int{1, 1, 1}, []int{3, 3, 3}},
		{[]int{2, 1, 1}, []int{4, 2, 2}},
		{[]int{1, 3}, []int{2, 6}},
	} {
		t.Run(fmt.Sprint(tc.weights), func(t *testing.T) {
			t.Parallel()
			n := 0
			for _, w := range tc.want {
				n += w
			}
			arrived := make(chan string, n)
			release := make(chan struct{})
			var once sync.Once
			free := func() { once.Do(func() { close(release) }) }
			var bes []*lb.Backend
			var names []string
			for i, w := range tc.weights {
				name := string(rune('a' + i))
				up := startUpstream(t, name, blocking(name, arrived, release))
				bes = append(bes, backendFor(t, up.url, lb.WithWeight(w)))
				names = append(names, name)
			}
			t.Cleanup(free) // runs before the backends close
			pool, err := lb.NewPool(bes...)
			if err != nil {
				t.Fatal(err)
			}
			g := startGateway(t, pool, lb.LeastConn())
			var wg sync.WaitGroup
			var failed atomic.Int64
			for range n {
				wg.Go(func() {
					r, err := g.do(context.Background(), http.MethodGet, "/", "", nil, nil)
					if err != nil || r.status != http.StatusOK {
						failed.Add(1)
					}
				})
			}
			counts := map[string]int{}
			for range n {
				counts[await(t, arrived, "the burst to reach the backends")]++
			}
			for i, be := range bes {
				if counts[names[i]] != tc.want[i] || be.Active() != int64(tc.want[i]) {
					t.Errorf("backend %s (weight %d): %d requests, Active() %d; want %d",
						names[i], tc.weights[i], counts[names[i]], be.Active(), tc.want[i])
				}
			}
			free()
			wg.Wait()
			if failed.Load() != 0 {
				t.Errorf("%d requests failed", failed.Load())
			}
			for i, be := range bes {
				eventually(t, "in-flight counts back to 0", func() bool { return be.Active() == 0 })
				_ = i
			}
		})
	}
}

// TestLeastConnAvoidsBusyBackend: while one backend holds a long request,
// the next ones go to the other.
func TestLeastConnAvoidsBusyBackend(t *testing.T) {
	t.Parallel()
	arrived := make(chan string, 1)
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	slow := startUpstream(t, "slow", blocking("slow", arrived, release))
	fast := startUpstream(t, "fast", nil)
	t.Cleanup(free)
	pool, bes := poolOf(t, slow.url, fast.url)
	g := startGateway(t, pool, lb.LeastConn())
	done := make(chan error, 1)
	go func() {
		_, err := g.do(context.Background(), http.MethodGet, "/", "", nil, nil)
		done <- err
	}()
	await(t, arrived, "the long request")
	for i := range 5 {
		if got := g.served(t, nil); got != "fast" {
			t.Errorf("request %d while slow is busy went to %s; want fast", i, got)
		}
		eventually(t, "fast idle", func() bool { return bes[1].Active() == 0 })
	}
	if n := bes[0].Active(); n != 1 {
		t.Errorf("slow.Active() = %d during its request; want 1", n)
	}
	free()
	if err := await(t, done, "the long request to end"); err != nil {
		t.Errorf("long request: %v", err)
	}
	eventually(t, "slow idle", func() bool { return bes[0].Active() == 0 })
}

// keyed returns a header with X-User set to key.
func keyed(key string) http.Header { return http.Header{"X-User": {key}} }

// mapKeys sends one request per key with X-User: key, from 8 clients, and
// returns the backend that served each key.
func mapKeys(t *testing.T, g *gateway, keys []string) map[string]string {
	t.Helper()
	var mu sync.Mutex
	m := make(map[string]string, len(keys))
	var wg sync.WaitGroup
	var failed atomic.Value
	next := atomic.Int64{}
	for range 8 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(keys) {
					return
				}
				r, err := g.do(context.Background(), http.MethodGet, "/", "", nil, keyed(keys[i]))
				if err == nil && r.status != http.StatusOK {
					err = fmt.Errorf("status %d", r.status)
				}
				if err != nil {
					failed.CompareAndSwap(nil, err.Error())
					return
				}
				name, _, _ := strings.Cut(string(r.body), "|")
				mu.Lock()
				m[keys[i]] = name
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if e := failed.Load(); e != nil {
		t.Fatalf("request failed: %v", e)
	}
	return m
}

func makeKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("user-%04d", i)
	}
	return keys
}

func TestConsistentHashSticky(t *testing.T) {
	t.Parallel()
	ups := []*upstream{startUpstream(t, "a", nil), startUpstream(t, "b", nil), startUpstream(t, "c", nil)}
	pool, _ := poolOf(t, urlsOf(ups...)...)
	g := startGateway(t, pool, lb.ConsistentHash(lb.HeaderKey("X-User")))
	keys := makeKeys(60)
	first := mapKeys(t, g, keys)
	used := map[string]int{}
	for _, k := range keys {
		used[first[k]]++
	}
	if len(used) != 3 {
		t.Errorf("60 keys landed on %v; want all three backends used", used)
	}
	for round := range 4 {
		again := mapKeys(t, g, keys)
		for _, k := range keys {
			if again[k] != first[k] {
				t.Errorf("round %d: key %s went to %s, earlier to %s", round, k, again[k], first[k])
			}
		}
	}
}

// TestConsistentHashIndependentBalancersAgree: two balancers over the same
// URLs, with pools and Backends of their own, send every key to the same
// backend.
func TestConsistentHashIndependentBalancersAgree(t *testing.T) {
	t.Parallel()
	ups := []*upstream{startUpstream(t, "a", nil), startUpstream(t, "b", nil), startUpstream(t, "c", nil), startUpstream(t, "d", nil)}
	p1, _ := poolOf(t, urlsOf(ups...)...)
	p2, _ := poolOf(t, urlsOf(ups...)...)
	g1 := startGateway(t, p1, lb.ConsistentHash(lb.HeaderKey("X-User")))
	g2 := startGateway(t, p2, lb.ConsistentHash(lb.HeaderKey("X-User")))
	keys := makeKeys(1000)
	m1, m2 := mapKeys(t, g1, keys), mapKeys(t, g2, keys)
	differ := 0
	for _, k := range keys {
		if m1[k] != m2[k] {
			differ++
		}
	}
	if differ != 0 {
		t.Errorf("two independent balancers disagree on %d of 1000 keys", differ)
	}
}

// TestConsistentHashRemoveMovesOnlyItsKeys removes a backend (only its keys
// move) and adds it back (the original mapping returns).
func TestConsistentHashRemoveMovesOnlyItsKeys(t *testing.T) {
	t.Parallel()
	ups := []*upstream{startUpstream(t, "a", nil), startUpstream(t, "b", nil), startUpstream(t, "c", nil), startUpstream(t, "d", nil)}
	pool, _ := poolOf(t, urlsOf(ups...)...)
	g := startGateway(t, pool, lb.ConsistentHash(lb.HeaderKey("X-User")))
	keys := makeKeys(400)
	before := mapKeys(t, g, keys)

	if err := pool.Remove(ups[3].url); err != nil {
		t.Fatal(err)
	}
	after := mapKeys(t, g, keys)
	moved, ofD := 0, 0
	for _, k := range keys {
		switch {
		case before[k] == "d":
			ofD++
			if after[k] == "d" {
				t.Errorf("key %s still served by removed backend d", k)
			}
		case after[k] != before[k]:
			moved++
		}
	}
	if ofD == 0 {
		t.Fatal("no key mapped to d; the test proves nothing")
	}
	if moved != 0 {
		t.Errorf("removing d moved %d keys of other backends; want 0", moved)
	}

	// A new Backend for d's URL, added at the end: the ring derives from
	// URLs, so every key goes back where it was.
	if err := pool.Add(backendFor(t, ups[3].url)); err != nil {
		t.Fatal(err)
	}
	again := mapKeys(t, g, keys)
	for _, k := range keys {
		if again[k] != before[k] {
			t.Errorf("after re-adding d, key %s goes to %s; want %s as before", k, again[k], before[k])
		}
	}
}

// TestConsistentHashDownBackendKeysWalk: with one backend refusing
// connections, its keys are retried on the next backend along the ring,
// exactly where they go when it is not in the pool at all, and no other key
// moves; no request fails.
func TestConsistentHashDownBackendKeysWalk(t *testing.T) {
	t.Parallel()
	ups := []*upstream{startUpstream(t, "a", nil), startUpstream(t, "b", nil), startUpstream(t, "c", nil)}
	dead := refusingURL(t)
	withDead, _ := poolOf(t, append(urlsOf(ups...), dead)...)
	without, _ := poolOf(t, urlsOf(ups...)...)
	for _, passive := range []bool{false, true} {
		t.Run(fmt.Sprintf("passive=%v", passive), func(t *testing.T) {
			var opts []lb.Option
			p := withDead
			if passive {
				opts = append(opts, lb.WithPassiveHealth(&health.Passive{MaxFails: 1, FailTimeout: time.Minute}))
				p, _ = poolOf(t, append(urlsOf(ups...), dead)...)
			}
			g1 := startGateway(t, p, lb.ConsistentHash(lb.HeaderKey("X-User")), opts...)
			g2 := startGateway(t, without, lb.ConsistentHash(lb.HeaderKey("X-User")))
			keys := makeKeys(300)
			m1, m2 := mapKeys(t, g1, keys), mapKeys(t, g2, keys)
			for _, k := range keys {
				if m1[k] != m2[k] {
					t.Errorf("key %s: %s with a dead member, %s without it", k, m1[k], m2[k])
				}
			}
		})
	}
}

// TestConsistentHashEmptyKeyRoundRobin: requests without a key are
// balanced round robin, not sent to one backend.
func TestConsistentHashEmptyKeyRoundRobin(t *testing.T) {
	t.Parallel()
	ups := []*upstream{startUpstream(t, "a", nil), startUpstream(t, "b", nil), startUpstream(t, "c", nil)}
	pool, _ := poolOf(t, urlsOf(ups...)...)
	g := startGateway(t, pool, lb.ConsistentHash(lb.HeaderKey("X-User")))
	counts := map[string]int{}
	for i := range 30 {
		counts[g.served(t, nil)]++
		// Keyed requests in between do not disturb the rotation.
		g.served(t, keyed(fmt.Sprint("k", i)))
	}
	if counts["a"] != 10 || counts["b"] != 10 || counts["c"] != 10 {
		t.Errorf("30 requests without a key: %v; want 10 each (round robin)", counts)
	}
}

func TestNoHealthyBackend(t *testing.T) {
	t.Parallel()
	check := func(t *testing.T, g *gateway, rec *errRecorder, hidden ...string) {
		t.Helper()
		r := g.mustDo(t, http.MethodGet, "/", "", nil, nil)
		if r.status != http.StatusServiceUnavailable {
			t.Errorf("status %d, body %q; want 503", r.status, r.body)
		}
		for _, h := range hidden {
			if strings.Contains(string(r.body), h) {
				t.Errorf("503 body %q reveals backend address %s", r.body, h)
			}
		}
		if rec != nil {
			if err := rec.only(t); !errors.Is(err, lb.ErrNoHealthyBackend) {
				t.Errorf("ErrorHandler got %v; want an error wrapping ErrNoHealthyBackend", err)
			}
		}
	}

	t.Run("empty pool", func(t *testing.T) {
		t.Parallel()
		pool, _ := lb.NewPool()
		check(t, startGateway(t, pool, lb.RoundRobin()), nil)
		var rec errRecorder
		pool2, _ := lb.NewPool()
		check(t, startGateway(t, pool2, lb.RoundRobin(), lb.WithErrorHandler(rec.handle)), &rec)
	})

	t.Run("all down by health check", func(t *testing.T) {
		t.Parallel()
		up := startUpstream(t, "a", nil)
		up2 := startUpstream(t, "b", nil)
		pool, bes := poolOf(t, up.url, up2.url)
		var rec errRecorder
		checker := &failingChecker{}
		g := startGateway(t, pool, lb.RoundRobin(), lb.WithHealthCheck(checker), lb.WithErrorHandler(rec.handle))
		for _, be := range bes {
			if be.Alive() {
				t.Errorf("%s Alive() before passing a check with StartDown", be)
			}
		}
		check(t, g, &rec, hostPortOf(up.url), hostPortOf(up2.url))
		if up.count()+up2.count() != 0 {
			t.Error("a backend that is down got the request")
		}
	})

	t.Run("all ejected by passive health", func(t *testing.T) {
		t.Parallel()
		d1, d2 := refusingURL(t), refusingURL(t)
		pool, bes := poolOf(t, d1, d2)
		var rec errRecorder
		g := startGateway(t, pool, lb.RoundRobin(),
			lb.WithPassiveHealth(&health.Passive{MaxFails: 1, FailTimeout: time.Minute}),
			lb.WithErrorHandler(rec.handle))
		r := g.mustDo(t, http.MethodGet, "/", "", nil, nil)
		if r.status != http.StatusBadGateway {
			t.Errorf("first request to two refusing backends: status %d; want 502", r.status)
		}
		if err := rec.only(t); !errors.Is(err, lb.ErrAttemptsFailed) {
			t.Errorf("first request: ErrorHandler got %v; want ErrAttemptsFailed", err)
		}
		for _, be := range bes {
			if be.Alive() {
				t.Errorf("%s still alive after a refused attempt with MaxFails 1", be)
			}
		}
		rec = errRecorder{}
		check(t, g, &rec, hostPortOf(d1), hostPortOf(d2))
	})

	t.Run("retry-after", func(t *testing.T) {
		t.Parallel()
		pool, _ := lb.NewPool()
		g := startGateway(t, pool, lb.RoundRobin(), lb.WithRetryAfter(3*time.Second))
		r := g.mustDo(t, http.MethodGet, "/", "", nil, nil)
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "3" {
			t.Errorf("status %d, Retry-After %q; want 503 with Retry-After: 3", r.status, r.header.Get("Retry-After"))
		}
	})
}

// failingChecker is a health checker whose checks all fail; its targets
// start down.
type failingChecker struct{ n atomic.Int64 }

func (c *failingChecker) Check(ctx context.Context, target *url.URL) error {
	c.n.Add(1)
	return errors.New("always down")
}

func (c *failingChecker) Schedule() health.Schedule {
	return health.Schedule{Interval: time.Hour, StartDown: true}
}

// hangup is a handler that reads the request and closes the connection
// without answering.
func hangup(w http.ResponseWriter, r *http.Request) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	conn.Close()
}

// reset is a handler that reads the request and resets the connection.
func reset(w http.ResponseWriter, r *http.Request) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

func TestAllAttemptsFailed(t *testing.T) {
	t.Parallel()
	bad1 := startUpstream(t, "bad1", hangup)
	bad2 := startUpstream(t, "bad2", reset)
	dead := refusingURL(t)
	pool, _ := poolOf(t, bad1.url, dead, bad2.url)
	var rec errRecorder
	g := startGateway(t, pool, lb.RoundRobin(), lb.WithErrorHandler(rec.handle))
	r := g.mustDo(t, http.MethodGet, "/", "all-fail", nil, nil)
	if r.status != http.StatusBadGateway {
		t.Errorf("status %d; want 502", r.status)
	}
	if err := rec.only(t); !errors.Is(err, lb.ErrAttemptsFailed) {
		t.Errorf("ErrorHandler got %v; want ErrAttemptsFailed", err)
	}
	if bad1.hits("all-fail") != 1 || bad2.hits("all-fail") != 1 {
		t.Errorf("bad1 saw the GET %d times, bad2 %d; want once each", bad1.hits("all-fail"), bad2.hits("all-fail"))
	}

	// The default answer: 502 with a body that names no backend.
	pool2, _ := poolOf(t, bad1.url, dead)
	g2 := startGateway(t, pool2, lb.RoundRobin())
	r = g2.mustDo(t, http.MethodGet, "/", "", nil, nil)
	if r.status != http.StatusBadGateway {
		t.Errorf("default handler: status %d; want 502", r.status)
	}
	for _, h := range []string{hostPortOf(bad1.url), hostPortOf(dead), "127.0.0.1"} {
		if strings.Contains(string(r.body), h) || strings.Contains(fmt.Sprint(r.header), h) {
			t.Errorf("502 answer (%v, %q) reveals %s", r.header, r.body, h)
		}
	}
}

func TestGatewayTimeout(t *testing.T) {
	t.Parallel()
	arrived := make(chan string, 10)
	slow := startUpstream(t, "slow", blocking("slow", arrived, nil))
	pool, bes := poolOf(t, slow.url)
	tr := &http.Transport{ResponseHeaderTimeout: 200 * time.Millisecond}
	t.Cleanup(tr.CloseIdleConnections)
	var rec errRecorder
	g := startGateway(t, pool, lb.RoundRobin(), lb.WithTransport(tr), lb.WithErrorHandler(rec.handle))
	start := time.Now()
	r := g.mustDo(t, http.MethodGet, "/", "", nil, nil)
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("answer after %v; want about the 200ms header timeout", el)
	}
	if err := rec.only(t); !errors.Is(err, lb.ErrAttemptsFailed) {
		t.Errorf("ErrorHandler got %v; want ErrAttemptsFailed", err)
	}
	eventually(t, "in-flight count back to 0", func() bool { return bes[0].Active() == 0 })

	// The default handler answers 504, naming no backend.
	pool2, _ := poolOf(t, slow.url)
	g2 := startGateway(t, pool2, lb.RoundRobin(), lb.WithTransport(tr))
	r = g2.mustDo(t, http.MethodGet, "/", "", nil, nil)
	if r.status != http.StatusGatewayTimeout {
		t.Errorf("status %d, body %q; want 504", r.status, r.body)
	}
	if strings.Contains(string(r.body), hostPortOf(slow.url)) {
		t.Errorf("504 body %q reveals the backend", r.body)
	}
}

func TestCloseBalancer(t *testing.T) {
	t.Parallel()
	arrived := make(chan string, 1)
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	var open atomic.Int64 // backend connections open
	up := startUpstream(t, "a", blocking("a", arrived, release), func(s *http.Server) {
		s.ConnState = func(c net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				open.Add(1)
			case http.StateClosed, http.StateHijacked:
				open.Add(-1)
			}
		}
	})
	t.Cleanup(free)
	pool, _ := poolOf(t, up.url)
	var rec errRecorder
	checker := &countingChecker{}
	bal := lb.New(pool, lb.RoundRobin(), lb.WithErrorHandler(rec.handle), lb.WithHealthCheck(checker))
	g := serveGateway(t, bal, nil)

	// A request in flight when Close is called finishes normally.
	done := make(chan outcome, 1)
	go func() {
		r, err := g.do(context.Background(), http.MethodGet, "/", "inflight", nil, nil)
		if err != nil {
			r.status = -1
		}
		done <- r
	}()
	await(t, arrived, "the request in flight")
	if err := bal.Close(); err != nil {
		t.Errorf("Close() = %v; want nil", err)
	}
	if err := bal.Close(); err != nil {
		t.Errorf("second Close() = %v; want nil", err)
	}
	checks := checker.n.Load()

	r := g.mustDo(t, http.MethodGet, "/", "after", nil, nil)
	if r.status != http.StatusServiceUnavailable {
		t.Errorf("request after Close: status %d; want 503", r.status)
	}
	if err := rec.only(t); !errors.Is(err, lb.ErrClosed) {
		t.Errorf("ErrorHandler after Close got %v; want ErrClosed", err)
	}
	if up.hits("after") != 0 {
		t.Error("a request sent after Close reached the backend")
	}
	free()
	if r := await(t, done, "the request in flight"); r.status != http.StatusOK {
		t.Errorf("request in flight during Close: status %d; want 200", r.status)
	}
	// The balancer keeps no connection to the backend once its last
	// request is over.
	eventually(t, "backend connections closed after Close", func() bool { return open.Load() == 0 })
	time.Sleep(20 * time.Millisecond)
	if n := checker.n.Load(); n != checks {
		t.Errorf("%d health checks ran after Close returned", n-checks)
	}
}

// countingChecker passes every check and counts them.
type countingChecker struct{ n atomic.Int64 }

func (c *countingChecker) Check(ctx context.Context, target *url.URL) error {
	c.n.Add(1)
	return nil
}

func (c *countingChecker) Schedule() health.Schedule {
	return health.Schedule{Interval: 5 * time.Millisecond, Jitter: -1}
}

func TestNewPanicsOnProgrammingErrors(t *testing.T) {
	t.Parallel()
	pool, _ := lb.NewPool()
	for _, tc := range []struct {
		name string
		f    func()
		want string
	}{
		{"nil pool", func() { lb.New(nil, lb.RoundRobin()) }, "nil"},
		{"negative tries", func() { lb.New(pool, nil, lb.WithRetry(lb.RetryPolicy{Tries: -1})) }, "Tries"},
		{"bad status", func() { lb.New(pool, nil, lb.WithRetry(lb.RetryPolicy{Statuses: []int{42}})) }, "42"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				p := recover()
				if p == nil || !strings.Contains(fmt.Sprint(p), tc.want) {
					t.Errorf("panic %v; want a panic naming %q", p, tc.want)
				}
			}()
			tc.f()
		})
	}
	// A nil strategy means round robin.
	a, b := startUpstream(t, "a", nil), startUpstream(t, "b", nil)
	p, _ := poolOf(t, a.url, b.url)
	g := startGateway(t, p, nil)
	if s := g.sequence(t, 4); s != "a b a b" {
		t.Errorf("nil strategy: %s; want a b a b", s)
	}
}
