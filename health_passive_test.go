package lb_test

// End-to-end tests of passive health checks: ejection, probing and
// re-ejection on a manual clock (lb.WithClock), what counts as a failure,
// and how failures move smooth weighted round robin's effective_weight.
// Helpers: helpers_health_test.go, helpers_health_backend_test.go.

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
)

// ---------------------------------------------------------------------------
// Passive checks

// hcPassiveGW serves a balancer over servers with passive health p, no
// retries (each request is one attempt) and a manual clock.
func hcPassiveGW(t *testing.T, servers []*hcServer, s lb.Strategy, p *health.Passive, opts ...lb.Option) (*hcGW, *hcClock) {
	t.Helper()
	clk := newHCClock()
	opts = append([]lb.Option{
		lb.WithPassiveHealth(p),
		lb.WithRetry(lb.RetryPolicy{Tries: 1}),
		lb.WithClock(clk.Now),
	}, opts...)
	bal := lb.New(hcPool(t, servers), s, opts...)
	return hcServe(t, bal, servers...), clk
}

func TestPassiveEjectionProbeAndReEjection(t *testing.T) {
	a, b, c := startHC(t, "a"), startHC(t, "b"), startHC(t, "c")
	gw, clk := hcPassiveGW(t, []*hcServer{a, b, c}, lb.RoundRobin(),
		&health.Passive{MaxFails: 3, FailTimeout: 10 * time.Second})
	bal := gw.bal
	t0 := clk.Now()

	// Three failed attempts within the window eject b.
	b.mode.Store(hcFail)
	for i := 1; i <= 3; i++ {
		if st := hcState(bal, b.url); st != lb.StateUp {
			t.Fatalf("b is %v after %d failures; want up", st, i-1)
		}
		if r := gw.hitBackend(t, b.url); r.status != http.StatusBadGateway {
			t.Fatalf("failed attempt #%d: status %d; want 502", i, r.status)
		}
	}
	if st := hcState(bal, b.url); st != lb.StateEjected {
		t.Fatalf("b is %v after 3 failures in the window; want ejected", st)
	}
	before, _ := hcStat(bal, b.url)
	got := gw.spread(t, 30)
	after, _ := hcStat(bal, b.url)
	if after.Requests != before.Requests || got["a"] != 15 || got["c"] != 15 {
		t.Fatalf("while b is ejected: traffic %v, %d attempts on b; want none", got, after.Requests-before.Requests)
	}

	// The ejection ends: exactly one probe goes to b while the others go
	// elsewhere; it succeeds and b is back.
	clk.Set(t0.Add(10 * time.Second))
	b.holdRequests()
	wait, done := gw.burst(30, "/")
	hcWait(t, "the probe to reach b and the other 29 requests to finish", func() bool {
		return b.held.Load() == 1 && done.Load() == 29
	})
	mid, _ := hcStat(bal, b.url)
	if mid.Requests != after.Requests+1 {
		t.Fatalf("%d attempts on b during the probe; want exactly 1", mid.Requests-after.Requests)
	}
	if mid.State != lb.StateProbing {
		t.Errorf("b is %v while its probe is out; want probing", mid.State)
	}
	b.releaseHeld()
	for i, st := range wait() {
		if st != http.StatusOK {
			t.Fatalf("request %d of the burst: status %d", i, st)
		}
	}
	hcWaitState(t, bal, b.url, lb.StateUp)
	if got := gw.spread(t, 30); got["b"] != 10 {
		t.Fatalf("after a successful probe: traffic %v; want b back in rotation", got)
	}

	// Ejected again; this time the probe fails and b is out for another
	// FailTimeout from then.
	t1 := t0.Add(20 * time.Second)
	clk.Set(t1)
	b.mode.Store(hcFail)
	for i := 0; i < 3; i++ {
		gw.hitBackend(t, b.url)
	}
	if st := hcState(bal, b.url); st != lb.StateEjected {
		t.Fatalf("b is %v after 3 more failures; want ejected", st)
	}
	clk.Set(t1.Add(10 * time.Second))
	if r := gw.hitBackend(t, b.url); r.status != http.StatusBadGateway {
		t.Fatalf("failing probe: status %d; want 502", r.status)
	}
	bs, _ := hcStat(bal, b.url)
	if bs.State != lb.StateEjected {
		t.Fatalf("b is %v after its probe failed; want ejected again", bs.State)
	}
	clk.Set(t1.Add(20*time.Second - time.Millisecond))
	gw.spread(t, 30)
	if bs2, _ := hcStat(bal, b.url); bs2.Requests != bs.Requests || bs2.State != lb.StateEjected {
		t.Fatalf("1ms before the second ejection ends: b is %v with %d new attempts; want ejected, none",
			bs2.State, bs2.Requests-bs.Requests)
	}
	clk.Set(t1.Add(20 * time.Second))
	b.mode.Store(hcOK)
	if r := gw.hitBackend(t, b.url); r.status != http.StatusOK || r.body != "b" {
		t.Fatalf("second probe: %d %q; want 200 from b", r.status, r.body)
	}
	if st := hcState(bal, b.url); st != lb.StateUp {
		t.Fatalf("b is %v after a successful probe; want up", st)
	}
}

func TestPassiveFailuresSpreadOverMoreThanFailTimeoutDoNotEject(t *testing.T) {
	a, b := startHC(t, "a"), startHC(t, "b")
	gw, clk := hcPassiveGW(t, []*hcServer{a, b}, lb.RoundRobin(),
		&health.Passive{MaxFails: 3, FailTimeout: 10 * time.Second})
	b.mode.Store(hcFail)
	t0 := clk.Now()
	for _, at := range []time.Duration{0, 5500 * time.Millisecond, 11 * time.Second} {
		clk.Set(t0.Add(at))
		gw.hitBackend(t, b.url)
		if st := hcState(gw.bal, b.url); st != lb.StateUp {
			t.Fatalf("b is %v after a failure at +%v; the failures are spread over more than 10s", st, at)
		}
	}
	// A fourth failure makes three within 10s (5.5s, 11s, 15s): ejected.
	clk.Set(t0.Add(15 * time.Second))
	gw.hitBackend(t, b.url)
	if st := hcState(gw.bal, b.url); st != lb.StateEjected {
		t.Fatalf("b is %v after 3 failures within 10s; want ejected", st)
	}
}

func TestPassiveClientCancelNeverCounts(t *testing.T) {
	a, b := startHC(t, "a"), startHC(t, "b")
	gw, _ := hcPassiveGW(t, []*hcServer{a, b}, lb.RoundRobin(), &health.Passive{MaxFails: 1})
	for _, mode := range []int32{hcHang, hcHangBody} {
		a.mode.Store(mode)
		b.mode.Store(mode)
		for i := 0; i < 4; i++ { // two on each backend
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, gw.url+"/", nil)
				resp, err := gw.c.Do(req)
				if err == nil {
					buf := make([]byte, 7)
					_, err = io.ReadFull(resp.Body, buf) // "partial"
					if err == nil {
						cancel() // mid-body
						_, err = io.ReadAll(resp.Body)
					}
					resp.Body.Close()
				}
				errc <- err
			}()
			hcWait(t, "the request to reach a backend", func() bool { return a.held.Load()+b.held.Load() == 1 })
			cancel()
			if err := <-errc; err == nil {
				t.Fatalf("canceled request succeeded")
			}
			hcWait(t, "the canceled attempt to end", func() bool {
				st := gw.bal.Stats()
				return st.Active == 0 && a.held.Load()+b.held.Load() == 0
			})
		}
	}
	st := gw.bal.Stats()
	for _, bs := range st.Backends {
		if bs.State != lb.StateUp || bs.Failures != 0 || bs.Requests != 4 {
			t.Errorf("%s after client cancels: %v, %d failures, %d attempts; want up, 0, 4", bs.URL, bs.State, bs.Failures, bs.Requests)
		}
	}
	a.mode.Store(hcOK)
	b.mode.Store(hcOK)
	if got := gw.spread(t, 10); got["a"] != 5 || got["b"] != 5 {
		t.Fatalf("after client cancels: traffic %v; want both backends", got)
	}
}

func TestPassive4xxNeverCounts(t *testing.T) {
	a, b := startHC(t, "a"), startHC(t, "b")
	gw, _ := hcPassiveGW(t, []*hcServer{a, b}, lb.RoundRobin(),
		&health.Passive{MaxFails: 1, FailStatuses: []int{500, 502, 503, 504}})
	b.mode.Store(hc404)
	for i := 0; i < 20; i++ {
		gw.mustGet(t, "/")
	}
	bs, _ := hcStat(gw.bal, b.url)
	if bs.State != lb.StateUp || bs.Failures != 0 || bs.Requests != 10 {
		t.Fatalf("b answering 404: %v, %d failures, %d attempts; want up, 0, 10", bs.State, bs.Failures, bs.Requests)
	}
}

func TestPassiveFailStatusesCountListed503Only(t *testing.T) {
	a, b, c := startHC(t, "a"), startHC(t, "b"), startHC(t, "c")
	gw, _ := hcPassiveGW(t, []*hcServer{a, b, c}, lb.RoundRobin(),
		&health.Passive{MaxFails: 3, FailTimeout: 10 * time.Second, FailStatuses: []int{503}})
	b.mode.Store(hc500) // not listed
	c.mode.Store(hc503) // listed
	for i := 0; i < 3; i++ {
		if r := gw.hitBackend(t, c.url); r.status != http.StatusServiceUnavailable {
			t.Fatalf("c: status %d; want its 503 passed through", r.status)
		}
	}
	for i := 0; i < 10; i++ {
		gw.mustGet(t, "/")
	}
	bs, _ := hcStat(gw.bal, b.url)
	cs, _ := hcStat(gw.bal, c.url)
	if bs.State != lb.StateUp || bs.Failures != 0 {
		t.Errorf("b answering 500 (not listed): %v with %d failures; want up, 0", bs.State, bs.Failures)
	}
	if cs.State != lb.StateEjected || cs.Failures != 3 {
		t.Errorf("c answering 503 (listed): %v with %d failures; want ejected after 3", cs.State, cs.Failures)
	}
}

func TestPassiveEjectionEndsOnlyWhenActiveCheckPasses(t *testing.T) {
	a, b := startHC(t, "a"), startHC(t, "b")
	clk := newHCClock()
	// Fall is out of reach: b's failing checks never take it down, they
	// only keep it from coming back from its ejection.
	bal := lb.New(hcPool(t, []*hcServer{a, b}), lb.RoundRobin(),
		lb.WithHealthCheck(&health.HTTPCheck{Interval: 20 * time.Millisecond, Fall: 1000}),
		lb.WithPassiveHealth(&health.Passive{MaxFails: 1, FailTimeout: 10 * time.Second}),
		lb.WithRetry(lb.RetryPolicy{Tries: 1}),
		lb.WithClock(clk.Now))
	gw := hcServe(t, bal, a, b)
	hcWaitChecked(t, bal, a, b)
	hcWaitState(t, bal, a.url, lb.StateUp)
	hcWaitState(t, bal, b.url, lb.StateUp)
	b.healthy.Store(false)
	b.mode.Store(hcFail)
	gw.hitBackend(t, b.url)
	if st := hcState(bal, b.url); st != lb.StateEjected {
		t.Fatalf("b is %v after a failure with MaxFails 1; want ejected", st)
	}

	// Long past the ejection, b stays out while its checks fail: no probe
	// request with an active checker.
	clk.Advance(time.Minute)
	b.mode.Store(hcOK)
	before := b.hits.Load()
	checksBefore := b.healthHits.Load()
	for b.healthHits.Load() < checksBefore+3 {
		if r := gw.mustGet(t, "/"); r.status != http.StatusOK || r.body != "a" {
			t.Fatalf("after the ejection, checks failing: %d %q; want 200 from a", r.status, r.body)
		}
	}
	if b.hits.Load() != before || hcState(bal, b.url) != lb.StateEjected {
		t.Fatalf("b is %v and received %d requests before a check passed; want ejected, none",
			hcState(bal, b.url), b.hits.Load()-before)
	}
	b.healthy.Store(true)
	hcWaitState(t, bal, b.url, lb.StateUp)
	if got := gw.spread(t, 20); got["b"] != 10 {
		t.Fatalf("after a passing check: traffic %v; want b back", got)
	}
}

func TestSingleBackendPoolNeverEjectedByPassiveChecks(t *testing.T) {
	b := startHC(t, "b")
	gw, _ := hcPassiveGW(t, []*hcServer{b}, lb.SmoothWeighted(), &health.Passive{MaxFails: 1})
	b.mode.Store(hcFail)
	for i := 0; i < 10; i++ {
		if r := gw.mustGet(t, "/"); r.status != http.StatusBadGateway {
			t.Fatalf("request %d to the failing lone backend: status %d; want 502", i, r.status)
		}
	}
	bs, _ := hcStat(gw.bal, b.url)
	if bs.State != lb.StateUp || bs.Requests != 10 || bs.Failures != 10 {
		t.Fatalf("lone backend: %v, %d attempts, %d failures; want up, 10, 10", bs.State, bs.Requests, bs.Failures)
	}
	b.mode.Store(hcOK)
	if r := gw.mustGet(t, "/"); r.status != http.StatusOK || r.body != "b" {
		t.Fatalf("lone backend recovered: %d %q", r.status, r.body)
	}
}

func TestStatsShowsTimeDrivenStateWithoutTraffic(t *testing.T) {
	a, b := startHC(t, "a"), startHC(t, "b")
	gw, clk := hcPassiveGW(t, []*hcServer{a, b}, lb.RoundRobin(),
		&health.Passive{MaxFails: 1, FailTimeout: 10 * time.Second})
	b.mode.Store(hcFail)
	gw.hitBackend(t, b.url)
	if st := hcState(gw.bal, b.url); st != lb.StateEjected {
		t.Fatalf("b is %v; want ejected", st)
	}
	// The ejection ends with no request in between: Stats, stamped with
	// the clock's time, must show the state at that time.
	clk.Advance(10 * time.Second)
	st := gw.bal.Stats()
	for _, bs := range st.Backends {
		if bs.URL == b.url && bs.State != lb.StateProbing {
			t.Fatalf("Stats at %v shows b %v, the state of the expired snapshot; want probing", st.Time, bs.State)
		}
	}
}

// ---------------------------------------------------------------------------
// Smooth weighted round robin and effective_weight (algorithms.md §1)

// hcRecoveryVector2 runs algorithms.md §1 recovery vector 2 over HTTP:
// weights a10 b10, MaxFails 5, a failing on the requests where the vector
// has a! (1, 4 and 6). It returns the picks, marked ! when the attempt
// failed, and a's Stats.EffectiveWeight after each request.
func hcRecoveryVector2(t *testing.T) (picks []string, ew []float64) {
	t.Helper()
	a, b := startHC(t, "a"), startHC(t, "b")
	a.setFailIf(func(r *http.Request) bool {
		switch r.Header.Get("X-Hc-Seq") {
		case "1", "4", "6":
			return true
		}
		return false
	})
	clk := newHCClock()
	pool, err := lb.NewPool(hcNewBackend(t, a.url, lb.WithWeight(10)), hcNewBackend(t, b.url, lb.WithWeight(10)))
	if err != nil {
		t.Fatal(err)
	}
	bal := lb.New(pool, lb.SmoothWeighted(),
		lb.WithPassiveHealth(&health.Passive{MaxFails: 5, FailTimeout: time.Minute}),
		lb.WithRetry(lb.RetryPolicy{Tries: 1}),
		lb.WithClock(clk.Now))
	gw := hcServe(t, bal, a, b)
	for i := 1; i <= 14; i++ {
		before := bal.Stats()
		r, err := gw.get(context.Background(), "/", http.Header{"X-Hc-Seq": {strconv.Itoa(i)}})
		if err != nil {
			t.Fatal(err)
		}
		after := bal.Stats()
		pick := "?"
		for k, bs := range after.Backends {
			if bs.Requests > before.Backends[k].Requests {
				pick = map[string]string{a.url: "a", b.url: "b"}[bs.URL]
			}
		}
		if r.status != http.StatusOK {
			pick += "!"
		}
		picks = append(picks, pick)
		as, _ := hcStat(bal, a.url)
		ew = append(ew, as.EffectiveWeight)
		if st := as.State; st != lb.StateUp {
			t.Fatalf("a is %v after request %d; 3 failures with MaxFails 5 must not eject it", st, i)
		}
	}
	return picks, ew
}

func TestSmoothWeightedFailuresFollowRecoveryVector2(t *testing.T) {
	picks, _ := hcRecoveryVector2(t)
	const want = "a! b b a! b a! b a b a b a b a"
	if got := strings.Join(picks, " "); got != want {
		t.Fatalf("picks %q; want %q (algorithms.md §1 recovery vector 2)", got, want)
	}
}

func TestStatsEffectiveWeightFollowsRecoveryVector2(t *testing.T) {
	_, ew := hcRecoveryVector2(t)
	want := []float64{8, 9, 10, 8, 9, 8, 9, 10, 10, 10, 10, 10, 10, 10}
	if slices.Equal(ew, want) {
		return
	}
	t.Fatalf("a's effective weight after each request %v; want %v", ew, want)
}
