package reliability

import (
	"context"
	"net/http"
	"slices"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
	"github.com/tinylb/lb/internal/faultkit"
)

// cpuTime returns the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// F10: every backend is down. Once the balancer knows it, requests get a
// fast 503 with Retry-After and dial nothing; the process idles; the
// first backend back takes traffic within a few intervals; panic mode and
// passive-only setups behave as configured.
func TestF10_AllBackendsDown(t *testing.T) {
	interval := 50 * time.Millisecond
	check := &health.HTTPCheck{Path: faultkit.HealthPath, Interval: interval, Timeout: 40 * time.Millisecond, Rise: 2, Fall: 2}

	t.Run("active checks", func(t *testing.T) {
		e := newEnv(t, envConfig{n: 3, opts: []lb.Option{lb.WithHealthCheck(check), lb.WithRetryAfter(5 * time.Second)}})
		for _, b := range e.backends {
			b.Kill()
		}
		mustWait(t, 40*interval, "all backends down", func() bool {
			for _, s := range e.bal.Stats().Backends {
				if s.State != lb.StateDown {
					return false
				}
			}
			return true
		})
		dials := e.dialer.Total()
		n := scale(200, 2000)
		var worst time.Duration
		var lat []time.Duration
		for range n {
			a := e.do(faultkit.Request{N: 10})
			if a.Status != http.StatusServiceUnavailable || a.Header.Get("Retry-After") != "5" {
				t.Fatalf("F10: status %d Retry-After %q, want 503 and 5", a.Status, a.Header.Get("Retry-After"))
			}
			worst = max(worst, a.Duration)
			lat = append(lat, a.Duration)
		}
		slices.Sort(lat)
		if got := e.dialer.Total() - dials; got != 0 {
			t.Errorf("F10: %d dials for %d requests while every backend was known down", got, n)
		}
		if worst > 500*time.Millisecond {
			t.Errorf("F10: a 503 took %v (50 ms is the goal)", worst)
		}
		// Idle while down: health checks only, no busy loop.
		idle := scale(500*time.Millisecond, 2*time.Second)
		c0 := cpuTime()
		time.Sleep(idle)
		used := cpuTime() - c0
		if used > idle/2 {
			t.Errorf("F10: %v of CPU in %v while every backend is down", used, idle)
		}
		// The first backend back takes traffic within interval x rise
		// (plus generous slack).
		if err := e.backends[0].Restart(); err != nil {
			t.Fatal(err)
		}
		back := time.Now()
		mustWait(t, 20*interval*time.Duration(check.Rise), "first backend back in service", func() bool {
			return e.do(faultkit.Request{N: 1}).OK()
		})
		t.Logf("F10: %d requests while all down: p50 %v, max %v, 0 dials; %v CPU in %v idle; back in %v",
			n, lat[len(lat)/2], worst, used, idle, time.Since(back).Round(time.Millisecond))
		e.assertContained()
	})

	t.Run("panic mode", func(t *testing.T) {
		e := newEnv(t, envConfig{n: 3, opts: []lb.Option{lb.WithHealthCheck(check), lb.WithPanicThreshold(50)}})
		for _, b := range e.backends {
			b.Kill()
		}
		mustWait(t, 40*interval, "panic mode", func() bool { return e.bal.Stats().Panic })
		dials := e.dialer.Total()
		for range 20 {
			a := e.do(faultkit.Request{N: 1})
			if a.Status != http.StatusBadGateway {
				t.Errorf("F10 panic mode: status %d, want 502 (balanced over the dead backends)", a.Status)
			}
		}
		if got := e.dialer.Total() - dials; got == 0 || got > 20*3 {
			t.Errorf("F10 panic mode: %d dials for 20 requests; want 1..60 (tries ≤ 3)", got)
		}
		// In panic mode a backend that comes back is used at once.
		if err := e.backends[1].Restart(); err != nil {
			t.Fatal(err)
		}
		ok := 0
		for range 10 {
			if e.do(faultkit.Request{N: 1}).OK() {
				ok++
			}
		}
		if ok == 0 {
			t.Errorf("F10 panic mode: no request reached the backend that came back")
		}
	})

	t.Run("passive only", func(t *testing.T) {
		e := newEnv(t, envConfig{n: 3, opts: []lb.Option{lb.WithPassiveHealth(health.Passive{MaxFails: 1, FailTimeout: time.Minute})}})
		for _, b := range e.backends {
			b.Kill()
		}
		statuses := map[int]int{}
		for range 50 {
			statuses[e.do(faultkit.Request{N: 1}).Status]++
		}
		if got := e.dialer.Total(); got > 3 {
			t.Errorf("F10 passive: %d dials for 50 requests to 3 dead backends; want ≤ 3 (each fails once, then is ejected)", got)
		}
		if statuses[http.StatusServiceUnavailable] < 49 {
			t.Errorf("F10 passive: statuses %v; want 503 once all are ejected", statuses)
		}
	})
}

// F11 (least_conn): a backend that recovers under load is not
// stampeded: its share in the first moments is at most twice its fair
// share.
func TestF11_RecoveryHerdLeastConn(t *testing.T) {
	// Generous check timeouts and Fall 3: under a loaded CI machine a
	// check that misses a tight timeout would take a healthy backend out.
	interval := 100 * time.Millisecond
	check := &health.HTTPCheck{Path: faultkit.HealthPath, Interval: interval, Timeout: interval, Rise: 1, Fall: 3}
	e := newEnv(t, envConfig{n: 3, strategy: lb.LeastConn(), opts: []lb.Option{lb.WithHealthCheck(check)}})
	for _, b := range e.backends {
		b.SetBehavior(faultkit.Behavior{Delay: 5 * time.Millisecond})
	}
	c := e.backends[2]
	c.Kill()
	mustWait(t, 40*interval, "c down", func() bool { return e.stat(c.URL).State == lb.StateDown })

	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.client.Run(ctx, faultkit.Load{Workers: scale(16, 32), Next: func(w, i int) faultkit.Request { return faultkit.Request{N: 100} }})
	}()
	time.Sleep(200 * time.Millisecond) // steady state on a and b
	if err := c.Restart(); err != nil {
		t.Fatal(err)
	}
	mustWait(t, 40*interval, "c up", func() bool { return e.stat(c.URL).State == lb.StateUp })
	r0 := []int64{e.backends[0].Requests(), e.backends[1].Requests(), c.Requests()}
	time.Sleep(scale(300*time.Millisecond, 500*time.Millisecond))
	r1 := []int64{e.backends[0].Requests(), e.backends[1].Requests(), c.Requests()}
	stop()
	<-done
	var total int64
	for i := range r0 {
		total += r1[i] - r0[i]
	}
	got := r1[2] - r0[2]
	share := float64(got) / float64(total)
	if share > 2.0/3 {
		t.Errorf("F11: the recovered backend took %s of %d requests in its first moments; fair is 33%%, limit 67%%", percent(got, total), total)
	}
	s := e.checkIntegrity(e.client.Attempts())
	if s.OK != s.Requests {
		t.Errorf("F11: %v", s)
	}
	t.Logf("F11 least_conn: recovered backend took %s of %d requests in its first window", percent(got, total), total)
}

// F11 (slow start, fake clock): a recovered backend's share ramps up
// roughly linearly over the slow-start window to its fair share, and a new
// outage restarts the ramp.
func TestF11_SlowStartRamp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hosts := memHosts(3)
		mem := newMem()
		check := &fakeCheck{
			sched: health.Schedule{Interval: 100 * time.Millisecond, Timeout: 50 * time.Millisecond, Rise: 1, Fall: 1, Jitter: -1},
			fail:  mem.isDown,
		}
		const W = 8 * time.Second
		mem.setDown(hosts[2], true)
		bal := lb.New(memPool(t, hosts), lb.SmoothWeighted(), lb.WithTransport(mem), lb.WithHealthCheck(check), lb.WithSlowStart(W))
		defer bal.Close()
		time.Sleep(time.Second) // c is found down
		mem.setDown(hosts[2], false)
		time.Sleep(150 * time.Millisecond) // c passes a check: the ramp starts
		mem.take()

		// share sends requests for d, one every 10 ms, and returns c's share.
		share := func(d time.Duration) float64 {
			for range int(d / (10 * time.Millisecond)) {
				serve(bal, "/")
				time.Sleep(10 * time.Millisecond)
			}
			h := mem.take()
			return float64(h[hosts[2]]) / float64(h[hosts[0]]+h[hosts[1]]+h[hosts[2]])
		}
		var ramp []float64
		for range 4 {
			ramp = append(ramp, share(W/4))
		}
		after := share(2 * time.Second)
		t.Logf("F11 slow start: c's share per quarter of W: %.3f, after W: %.3f", ramp, after)
		for i := 1; i < len(ramp); i++ {
			if ramp[i] <= ramp[i-1] {
				t.Errorf("F11: share did not grow from quarter %d to %d: %.3f", i, i+1, ramp)
			}
		}
		if ramp[0] > 0.2 {
			t.Errorf("F11: c took %.0f%% in the first quarter of its ramp", 100*ramp[0])
		}
		if after < 1.0/3-0.1 || after > 1.0/3+0.1 {
			t.Errorf("F11: c's share after the ramp is %.3f, want 1/3 ± 0.1", after)
		}
		// Halfway through a new ramp, an outage restarts it.
		mem.setDown(hosts[2], true)
		time.Sleep(300 * time.Millisecond)
		mem.setDown(hosts[2], false)
		time.Sleep(150 * time.Millisecond)
		share(W / 2)
		mem.setDown(hosts[2], true)
		time.Sleep(300 * time.Millisecond)
		mem.setDown(hosts[2], false)
		time.Sleep(150 * time.Millisecond)
		mem.take()
		if again := share(W / 4); again > ramp[0]*1.5+0.02 {
			t.Errorf("F11: after a new outage c's share is %.3f, not back to the start of a ramp (%.3f)", again, ramp[0])
		}
	})
}
