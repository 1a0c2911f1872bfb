package lb_test

// Slow start (issue 3, algorithms.md §8): a backend that comes up ramps its
// share linearly over the window, with weight 1 too, and a new outage
// restarts the ramp. The ramp is read from the clock given with
// lb.WithClock, so shares are measured at fixed clock settings.

import (
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/tinylb/lb"
)

const hcSlowStart = 10 * time.Second

// hcRampUnits is the ramp of state.go's rampUnits: the weight in 1/16 of
// the configured weight, elapsed into a window: 1 + 15·elapsed/window,
// capped at 16.
func hcRampUnits(elapsed, window time.Duration) int {
	u := 1 + 15*int64(elapsed)/int64(window)
	return int(min(u, 16))
}

// hcShare sends k·(16+u) requests to a balancer over two backends of
// weight 1, one of them (name) ramped to u/16, and checks that name gets
// its smooth weighted share, k·u, within 2.
func hcShare(t *testing.T, gw *hcGW, name string, u, k int, when string) {
	t.Helper()
	n := k * (16 + u)
	got := gw.spread(t, n)
	want := k * u
	if d := got[name] - want; d < -2 || d > 2 {
		t.Errorf("%s: %s got %d of %d requests (%v); the ramp (%d/16 of its weight) gives %d",
			when, name, got[name], n, got, u, want)
	}
}

func TestSlowStartRampsBackendAddedToRunningBalancer(t *testing.T) {
	a, b := startHC(t, "a"), startHC(t, "b")
	clk := newHCClock()
	pool := hcPool(t, []*hcServer{a})
	bal := lb.New(pool, lb.SmoothWeighted(), lb.WithSlowStart(hcSlowStart), lb.WithClock(clk.Now))
	gw := hcServe(t, bal, a, b)
	if st := hcState(bal, a.url); st != lb.StateUp {
		t.Fatalf("a backend there from the start is %v; slow start applies to backends that come up later", st)
	}
	t0 := clk.Now()
	// Both weight 1: the ramp must work with the smallest weight.
	if err := pool.Add(hcNewBackend(t, b.url)); err != nil {
		t.Fatal(err)
	}
	for _, e := range []time.Duration{0, 2500 * time.Millisecond, 5 * time.Second, 7500 * time.Millisecond, 10 * time.Second, 30 * time.Second} {
		clk.Set(t0.Add(e))
		u := hcRampUnits(e, hcSlowStart)
		hcShare(t, gw, "b", u, 6, "+"+e.String())
		bs, _ := hcStat(bal, b.url)
		wantState := lb.StateSlowStart
		if e >= hcSlowStart {
			wantState = lb.StateUp
		}
		if bs.State != wantState {
			t.Errorf("+%v: b is %v; want %v", e, bs.State, wantState)
		}
		if want := float64(u) / 16; math.Abs(bs.EffectiveWeight-want) > 1e-9 {
			t.Errorf("+%v: b's effective weight %v; want %v", e, bs.EffectiveWeight, want)
		}
	}
}

func TestSlowStartRestartsAfterNewOutage(t *testing.T) {
	a, b := startHC(t, "a"), startHC(t, "b")
	clk := newHCClock()
	flags := newHCFlags(5 * time.Millisecond)
	bal := lb.New(hcPool(t, []*hcServer{a, b}), lb.SmoothWeighted(),
		lb.WithHealthCheck(flags), lb.WithSlowStart(hcSlowStart), lb.WithClock(clk.Now))
	gw := hcServe(t, bal, a, b)
	hcWaitChecked(t, bal, a, b)
	outage := func() {
		t.Helper()
		flags.set(false, b)
		hcWaitState(t, bal, b.url, lb.StateDown)
		flags.set(true, b)
		hcWaitState(t, bal, b.url, lb.StateSlowStart)
	}

	// b recovers at t0: it ramps from 1/16.
	t0 := clk.Now()
	outage()
	hcShare(t, gw, "b", 1, 6, "recovered")
	clk.Set(t0.Add(5 * time.Second))
	hcShare(t, gw, "b", hcRampUnits(5*time.Second, hcSlowStart), 6, "5s into the ramp")

	// A new outage halfway through the ramp starts it again.
	outage()
	hcShare(t, gw, "b", 1, 6, "recovered again")
	clk.Set(t0.Add(10 * time.Second))
	hcShare(t, gw, "b", hcRampUnits(5*time.Second, hcSlowStart), 6, "5s into the new ramp")
	clk.Set(t0.Add(15 * time.Second))
	hcShare(t, gw, "b", 16, 4, "after the new ramp")
	if st := hcState(bal, b.url); st != lb.StateUp {
		t.Fatalf("b is %v after its ramp; want up", st)
	}
}

// hcLeastConnBurst brings b of a, b, c back from an outage under least
// connections and sends 30 concurrent requests that the backends hold. It
// returns how many b took.
func hcLeastConnBurst(t *testing.T, slowStart bool, elapsed time.Duration) int {
	t.Helper()
	const burst = 30
	servers := []*hcServer{startHC(t, "a"), startHC(t, "b"), startHC(t, "c")}
	b := servers[1]
	clk := newHCClock()
	flags := newHCFlags(5 * time.Millisecond)
	opts := []lb.Option{lb.WithHealthCheck(flags), lb.WithClock(clk.Now)}
	if slowStart {
		opts = append(opts, lb.WithSlowStart(hcSlowStart))
	}
	bal := lb.New(hcPool(t, servers), lb.LeastConn(), opts...)
	gw := hcServe(t, bal, servers...)
	hcWaitChecked(t, bal, servers...)
	flags.set(false, b)
	hcWaitState(t, bal, b.url, lb.StateDown)
	flags.set(true, b)
	hcWait(t, "b back", func() bool { st := hcState(bal, b.url); return st == lb.StateUp || st == lb.StateSlowStart })
	clk.Advance(elapsed)

	for _, s := range servers {
		s.holdRequests()
	}
	wait, done := gw.burst(burst, "/")
	hcWait(t, "the whole burst to be held or answered", func() bool {
		n := done.Load()
		for _, s := range servers {
			n += s.held.Load()
		}
		return n == burst
	})
	took := int(b.held.Load())
	early := done.Load()
	for _, s := range servers {
		s.releaseHeld()
	}
	statuses := wait()
	for i, st := range statuses {
		if st != http.StatusOK || early > 0 {
			t.Fatalf("%d requests of the burst were answered before the backends answered; request %d: status %d (all: %v)",
				early, i, st, statuses)
		}
	}
	return took
}

func TestSlowStartLeastConnRecoveringBackendDoesNotTakeTheBurst(t *testing.T) {
	const burst = 30
	// Without slow start the recovering backend, idle, takes its third.
	if took := hcLeastConnBurst(t, false, 0); took < 8 {
		t.Fatalf("without slow start b took %d of %d; least connections should give it about a third", took, burst)
	}
	// With slow start it takes at most twice its ramped share.
	for _, e := range []time.Duration{0, 5 * time.Second} {
		u := hcRampUnits(e, hcSlowStart)
		fair := float64(burst) * float64(u) / float64(16+16+u)
		took := hcLeastConnBurst(t, true, e)
		t.Logf("+%v: b took %d of %d (ramped fair share %.2f)", e, took, burst, fair)
		if float64(took) > 2*fair {
			t.Errorf("+%v into its ramp b took %d of %d; its fair share at %d/16 is %.2f", e, took, burst, u, fair)
		}
	}
}
