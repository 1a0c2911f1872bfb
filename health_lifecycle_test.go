package lb_test

// End-to-end tests of the life of health checkers: a removed backend's
// checker stops, an update keeps the health of the backends that stay,
// balancers sharing an address keep their own health, checks use
// connections of their own, and closed balancers leave no goroutine.
// Helpers: helpers_health_test.go, helpers_health_backend_test.go.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
)

func TestRemovingBackendStopsItsChecker(t *testing.T) {
	const interval = 20 * time.Millisecond
	a, b := startHC(t, "a"), startHC(t, "b")
	pool := hcPool(t, []*hcServer{a, b})
	bal := lb.New(pool, lb.RoundRobin(), lb.WithHealthCheck(&health.HTTPCheck{Interval: interval, Jitter: -1}))
	hcServe(t, bal, a, b)
	hcWait(t, "b checked 3 times", func() bool { return b.healthHits.Load() >= 3 })

	if err := pool.Remove(b.url); err != nil {
		t.Fatal(err)
	}
	// A check in flight when Remove returned may still land within an
	// interval; nothing after that.
	time.Sleep(interval + 30*time.Millisecond)
	after := b.healthHits.Load()
	aBefore := a.healthHits.Load()
	time.Sleep(10 * interval)
	if n := b.healthHits.Load(); n != after {
		t.Fatalf("b received %d checks after it was removed", n-after)
	}
	if a.healthHits.Load() <= aBefore {
		t.Fatalf("a's checker stopped too")
	}
	if _, ok := hcStat(bal, b.url); ok {
		t.Fatalf("b still in Stats after Remove")
	}
}

func TestUpdateKeepsHealthStateOfBackendsThatStay(t *testing.T) {
	a, b, c := startHC(t, "a"), startHC(t, "b"), startHC(t, "c")
	b.healthy.Store(false)
	pool := hcPool(t, []*hcServer{a, b})
	// An interval of an hour: a restarted checker would show as a second
	// (immediate) check.
	bal := lb.New(pool, lb.RoundRobin(), lb.WithHealthCheck(&health.HTTPCheck{Interval: time.Hour}))
	gw := hcServe(t, bal, a, b, c)
	hcWaitState(t, bal, b.url, lb.StateDown)
	hcWaitChecked(t, bal, a)

	for i := 0; i < 10; i++ {
		err := pool.Update(hcNewBackend(t, a.url), hcNewBackend(t, b.url), hcNewBackend(t, c.url))
		if err != nil {
			t.Fatal(err)
		}
		if st := hcState(bal, b.url); st != lb.StateDown {
			t.Fatalf("b is %v right after Update #%d; want still down", st, i+1)
		}
	}
	before := b.hits.Load()
	got := gw.spread(t, 10)
	if b.hits.Load() != before {
		t.Fatalf("b (down) received requests after Update: traffic %v", got)
	}
	hcWaitChecked(t, bal, c)
	got = gw.spread(t, 20)
	if got["a"] != 10 || got["c"] != 10 {
		t.Fatalf("traffic %v; want a and c", got)
	}
	if a.healthHits.Load() != 1 || b.healthHits.Load() != 1 || c.healthHits.Load() != 1 {
		t.Fatalf("checks a=%d b=%d c=%d; want 1 each (Update must not restart the checkers of backends that stay)",
			a.healthHits.Load(), b.healthHits.Load(), c.healthHits.Load())
	}
}

func TestTwoBalancersSharingAnAddressKeepSeparateHealth(t *testing.T) {
	a, shared := startHC(t, "a"), startHC(t, "shared")
	shared.setFailIf(func(r *http.Request) bool { return r.Header.Get("X-Hc-Fail") != "" })
	var gws [2]*hcGW
	for i := range gws {
		gw, _ := hcPassiveGW(t, []*hcServer{a, shared}, lb.RoundRobin(), &health.Passive{MaxFails: 1})
		gws[i] = gw
	}
	// A failed attempt through the first balancer ejects the shared
	// address there, and only there.
	for i := 0; i < 2; i++ {
		gws[0].get(context.Background(), "/", http.Header{"X-Hc-Fail": {"1"}})
	}
	if st := hcState(gws[0].bal, shared.url); st != lb.StateEjected {
		t.Fatalf("shared is %v in the first balancer; want ejected", st)
	}
	if st := hcState(gws[1].bal, shared.url); st != lb.StateUp {
		t.Fatalf("shared is %v in the second balancer; its health is its own", st)
	}
	if got := gws[1].spread(t, 10); got["shared"] != 5 {
		t.Fatalf("second balancer: traffic %v; want shared in rotation", got)
	}
	if got := gws[0].spread(t, 10); got["shared"] != 0 {
		t.Fatalf("first balancer: traffic %v; want shared out", got)
	}
}

func TestHealthChecksUseTheirOwnConnectionsWithoutKeepAlive(t *testing.T) {
	a := startHC(t, "a")
	// Fall out of reach: a check timing out on a loaded machine must not
	// take the only backend down.
	bal := lb.New(hcPool(t, []*hcServer{a}), lb.RoundRobin(),
		lb.WithHealthCheck(&health.HTTPCheck{Interval: 30 * time.Millisecond, Fall: 1000}))
	gw := hcServe(t, bal, a)
	hcWaitState(t, bal, a.url, lb.StateUp)
	for a.healthHits.Load() < 10 {
		gw.spread(t, 10)
	}
	gw.spread(t, 20)
	// The last check may still be on its way: let it finish.
	time.Sleep(30 * time.Millisecond)
	_ = bal.Close()

	// Every check connection is closed after its one check.
	hcWait(t, "the check connections to close", func() bool {
		for _, u := range a.connUses() {
			if u.health > 0 && !u.closed {
				return false
			}
		}
		return true
	})

	var checkConns, proxyConns, checks, proxied int
	for id, u := range a.connUses() {
		if u.health > 0 && u.proxied > 0 {
			t.Errorf("connection %d carried %d checks and %d proxied requests", id, u.health, u.proxied)
		}
		if u.health > 1 || (u.health > 0 && u.idle > 0) {
			t.Errorf("connection %d carried %d checks and went idle %d times; checks must not keep connections alive", id, u.health, u.idle)
		}
		if u.health != u.closeHdr {
			t.Errorf("connection %d: %d checks, %d with Connection: close", id, u.health, u.closeHdr)
		}
		if u.health > 0 {
			checkConns++
		}
		if u.proxied > 0 {
			proxyConns++
			if u.idle == 0 {
				t.Errorf("proxy connection %d never went idle between requests", id)
			}
		}
		checks += u.health
		proxied += u.proxied
	}
	if checkConns != checks {
		t.Errorf("%d checks over %d connections; want one connection each", checks, checkConns)
	}
	if proxyConns == 0 || proxyConns*4 > proxied {
		t.Errorf("%d proxied requests over %d connections; want the proxy's pooled connections reused", proxied, proxyConns)
	}
	t.Logf("%d checks on %d connections, %d proxied requests on %d kept-alive connections", checks, checkConns, proxied, proxyConns)
}

func TestThousandBalancersWithHTTPCheckLeaveNoGoroutine(t *testing.T) {
	const n, batch = 1000, 50
	var hits [n]atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if i, err := strconv.Atoi(r.URL.Query().Get("b")); err == nil && i >= 0 && i < n {
			hits[i].Add(1)
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	// Half the balancers check through a transport that tells when a probe
	// starts after Close returned; the other half use HTTPCheck's own.
	shared := &http.Transport{DisableKeepAlives: true, Proxy: nil}
	t.Cleanup(shared.CloseIdleConnections)
	var closed [n]atomic.Bool
	var late atomic.Int64
	sum := func() (s int64) {
		for i := range hits {
			s += hits[i].Load()
		}
		return s
	}

	ignore := goleak.IgnoreCurrent()
	baseline := runtime.NumGoroutine()
	start := time.Now()
	for first := 0; first < n; first += batch {
		bals := make([]*lb.Balancer, 0, batch)
		for i := first; i < first+batch; i++ {
			pool, err := lb.NewPool(hcNewBackend(t, srv.URL))
			if err != nil {
				t.Fatal(err)
			}
			chk := &health.HTTPCheck{Path: fmt.Sprintf("/healthz?b=%d", i), Interval: 20 * time.Millisecond}
			if i%2 == 1 {
				chk.Transport = &hcProbeRT{base: shared, closed: &closed[i], late: &late}
			}
			bals = append(bals, lb.New(pool, lb.RoundRobin(), lb.WithHealthCheck(chk)))
		}
		hcWait(t, "the first probe of every balancer of the batch", func() bool {
			for i := first; i < first+batch; i++ {
				if hits[i].Load() == 0 {
					return false
				}
			}
			return true
		})
		for k, bal := range bals {
			if err := bal.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			closed[first+k].Store(true)
		}
	}
	t.Logf("1000 balancers created and closed in %v, %d probes", time.Since(start), sum())

	if l := late.Load(); l != 0 {
		t.Errorf("%d probes started after their balancer's Close returned", l)
	}
	// No checker outlives its balancer: the probe count stops moving.
	time.Sleep(100 * time.Millisecond)
	settled := sum()
	time.Sleep(200 * time.Millisecond)
	if now := sum(); now != settled {
		t.Errorf("%d probes arrived after every balancer was closed", now-settled)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			t.Errorf("%d goroutines 5s after the last Close; %d before the first New", runtime.NumGoroutine(), baseline)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	goleak.VerifyNone(t, ignore)
}
