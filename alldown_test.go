package lb_test

// All backends down (issue 3, algorithms.md §10): an immediate 503 with no
// attempt on any backend, panic mode below a healthy threshold, and backup
// backends used only while no primary is.

import (
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
)

// hcAllDown serves a balancer over two backends whose health checks fail
// from the first one, and waits until both are down. The interval of an
// hour means no check after the first.
func hcAllDown(t *testing.T, opts ...lb.Option) (*hcGW, []*hcServer) {
	t.Helper()
	servers := []*hcServer{startHC(t, "a"), startHC(t, "b")}
	for _, s := range servers {
		s.healthy.Store(false)
	}
	opts = append([]lb.Option{lb.WithHealthCheck(&health.HTTPCheck{Interval: time.Hour})}, opts...)
	bal := lb.New(hcPool(t, servers), lb.RoundRobin(), opts...)
	gw := hcServe(t, bal, servers...)
	for _, s := range servers {
		hcWaitState(t, bal, s.url, lb.StateDown)
	}
	return gw, servers
}

func TestAllDownAnswers503AtOnceWithRetryAfter(t *testing.T) {
	gw, servers := hcAllDown(t, lb.WithRetryAfter(5*time.Second))
	const n = 50
	start := time.Now()
	for i := 0; i < n; i++ {
		r := gw.mustGet(t, "/")
		if r.status != http.StatusServiceUnavailable {
			t.Fatalf("request %d with every backend down: status %d; want 503", i, r.status)
		}
		if got := r.header.Get("Retry-After"); got != "5" {
			t.Fatalf("Retry-After %q; want \"5\"", got)
		}
	}
	// Immediate: no waiting for a backend, no retry loop. The bound is
	// generous; a request that waited or retried would take far longer
	// than 50 loopback round trips.
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("%d answers with every backend down took %v", n, d)
	}
	st := gw.bal.Stats()
	if st.Requests != 0 || st.Unavailable != n {
		t.Errorf("Stats: %d attempts, %d unavailable; want 0 and %d", st.Requests, st.Unavailable, n)
	}
	for _, s := range servers {
		if s.hits.Load() != 0 {
			t.Errorf("%s received %d requests while down", s.name, s.hits.Load())
		}
		// The requests did not make the balancer probe any harder.
		if s.healthHits.Load() != 1 {
			t.Errorf("%s received %d checks; want its first only", s.name, s.healthHits.Load())
		}
	}
}

func TestAllDownErrorHandlerGetsErrNoHealthyBackend(t *testing.T) {
	var mu sync.Mutex
	var errs []error
	gw, servers := hcAllDown(t, lb.WithErrorHandler(func(w http.ResponseWriter, r *http.Request, err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
		http.Error(w, "custom", http.StatusTeapot)
	}))
	for i := 0; i < 5; i++ {
		if r := gw.mustGet(t, "/"); r.status != http.StatusTeapot {
			t.Fatalf("status %d; want the error handler's", r.status)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(errs) != 5 {
		t.Fatalf("error handler called %d times; want 5", len(errs))
	}
	for _, err := range errs {
		if !errors.Is(err, lb.ErrNoHealthyBackend) {
			t.Errorf("error %v; want it to wrap lb.ErrNoHealthyBackend", err)
		}
	}
	for _, s := range servers {
		if s.hits.Load() != 0 {
			t.Errorf("%s received %d requests while down", s.name, s.hits.Load())
		}
	}
}

func TestAllEjectedAnswers503WithoutRetryStorm(t *testing.T) {
	a, b := startHC(t, "a"), startHC(t, "b")
	a.mode.Store(hcFail)
	b.mode.Store(hcFail)
	clk := newHCClock()
	bal := lb.New(hcPool(t, []*hcServer{a, b}), lb.RoundRobin(),
		lb.WithPassiveHealth(&health.Passive{MaxFails: 1, FailTimeout: 10 * time.Second}),
		lb.WithRetryAfter(5*time.Second),
		lb.WithClock(clk.Now))
	gw := hcServe(t, bal, a, b)
	// One request tries both (the default retry), and both are ejected.
	if r := gw.mustGet(t, "/"); r.status != http.StatusBadGateway {
		t.Fatalf("first request: status %d; want 502 after both attempts failed", r.status)
	}
	for _, s := range []*hcServer{a, b} {
		if st := hcState(bal, s.url); st != lb.StateEjected {
			t.Fatalf("%s is %v; want ejected", s.name, st)
		}
	}
	for i := 0; i < 20; i++ {
		r := gw.mustGet(t, "/")
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "5" {
			t.Fatalf("request with both ejected: %d, Retry-After %q; want 503, 5", r.status, r.header.Get("Retry-After"))
		}
	}
	if st := bal.Stats(); st.Requests != 2 {
		t.Fatalf("%d attempts; want the first request's 2 and none after", st.Requests)
	}
}

func TestPanicThresholdBalancesOverAllBelowThreshold(t *testing.T) {
	servers := make([]*hcServer, 10)
	for i := range servers {
		servers[i] = startHC(t, string(rune('a'+i)))
	}
	flags := newHCFlags(5 * time.Millisecond)
	flags.set(false, servers[4:]...) // 4 healthy of 10
	bal := lb.New(hcPool(t, servers), lb.RoundRobin(), lb.WithHealthCheck(flags), lb.WithPanicThreshold(50))
	gw := hcServe(t, bal, servers...)
	for _, s := range servers[4:] {
		hcWaitState(t, bal, s.url, lb.StateDown)
	}
	hcWaitChecked(t, bal, servers...)

	// 40% healthy < 50%: panic, every backend takes traffic.
	if !bal.Stats().Panic {
		t.Fatalf("Stats().Panic false with 4 of 10 healthy and threshold 50")
	}
	got := gw.spread(t, 100)
	for _, s := range servers {
		if got[s.name] < 5 {
			t.Errorf("panic mode: %s got %d of 100 (%v); want traffic over all 10", s.name, got[s.name], got)
		}
	}

	// 50% healthy is not below 50%: only the healthy five.
	flags.set(true, servers[4])
	hcWaitState(t, bal, servers[4].url, lb.StateUp)
	if bal.Stats().Panic {
		t.Fatalf("Stats().Panic true with 5 of 10 healthy and threshold 50")
	}
	got = gw.spread(t, 100)
	for i, s := range servers {
		switch {
		case i < 5 && got[s.name] < 10:
			t.Errorf("not in panic: healthy %s got %d of 100 (%v)", s.name, got[s.name], got)
		case i >= 5 && got[s.name] != 0:
			t.Errorf("not in panic: down %s got %d of 100 (%v)", s.name, got[s.name], got)
		}
	}
}

func TestBackupsServeOnlyWhileNoPrimaryIsUp(t *testing.T) {
	p1, p2, k := startHC(t, "p1"), startHC(t, "p2"), startHC(t, "k")
	pool, err := lb.NewPool(hcNewBackend(t, p1.url), hcNewBackend(t, p2.url), hcNewBackend(t, k.url, lb.AsBackup()))
	if err != nil {
		t.Fatal(err)
	}
	flags := newHCFlags(5 * time.Millisecond)
	bal := lb.New(pool, lb.RoundRobin(), lb.WithHealthCheck(flags))
	gw := hcServe(t, bal, p1, p2, k)
	hcWaitChecked(t, bal, p1, p2, k)
	if bs, _ := hcStat(bal, k.url); !bs.Backup {
		t.Fatalf("Stats does not show k as a backup")
	}

	if got := gw.spread(t, 30); got["k"] != 0 {
		t.Fatalf("primaries up: traffic %v; want none on the backup", got)
	}
	flags.set(false, p1)
	hcWaitState(t, bal, p1.url, lb.StateDown)
	if got := gw.spread(t, 30); got["k"] != 0 || got["p2"] != 30 {
		t.Fatalf("one primary up: traffic %v; want all on p2", got)
	}
	flags.set(false, p2)
	hcWaitState(t, bal, p2.url, lb.StateDown)
	if got := gw.spread(t, 30); got["k"] != 30 {
		t.Fatalf("every primary down: traffic %v; want all on the backup", got)
	}
	flags.set(true, p1, p2)
	hcWaitState(t, bal, p1.url, lb.StateUp)
	hcWaitState(t, bal, p2.url, lb.StateUp)
	if got := gw.spread(t, 30); got["k"] != 0 || got["p1"] != 15 || got["p2"] != 15 {
		t.Fatalf("primaries back: traffic %v; want the backup idle again", got)
	}
}
