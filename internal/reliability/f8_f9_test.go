package reliability

import (
	"errors"
	"math"
	"net/url"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
)

// F8 (tracker, injected times): max_fails=3 within 10 s. The third failure
// ejects for the window; failures older than the window are forgotten;
// a success in between does not erase earlier failures (the documented
// difference from nginx); a cancel never counts.
func TestF8_PassiveThresholdsTracker(t *testing.T) {
	p := health.Passive{MaxFails: 3, FailTimeout: 10 * time.Second}
	t0 := time.Unix(1_000_000, 0)
	fail := func(tr health.Tracker, at time.Duration) (bool, time.Time) {
		return tr.Observe(health.Outcome{Time: t0.Add(at), Err: errors.New("refused")})
	}
	u, _ := url.Parse("http://10.0.0.1")

	tr := p.Track(u)
	fail(tr, 0)
	fail(tr, time.Second)
	if _, until := fail(tr, 2*time.Second); !until.Equal(t0.Add(12 * time.Second)) {
		t.Errorf("F8: third failure in the window ejects until %v, want last failure + 10s", until)
	}

	tr = p.Track(u)
	fail(tr, 0)
	fail(tr, time.Second)
	if _, until := fail(tr, 11*time.Second+time.Millisecond); !until.IsZero() {
		t.Errorf("F8: a failure older than the window still counted")
	}

	tr = p.Track(u)
	fail(tr, 0)
	fail(tr, time.Second)
	tr.Observe(health.Outcome{Time: t0.Add(1500 * time.Millisecond), Status: 200})
	if _, until := fail(tr, 2*time.Second); until.IsZero() {
		t.Errorf("F8: a success erased earlier failures; the documented rule is that only Reset does")
	}

	tr = p.Track(u)
	for i := range 5 {
		if failed, until := tr.Observe(health.Outcome{Time: t0.Add(time.Duration(i) * time.Millisecond), Err: errors.New("x"), Canceled: true}); failed || !until.IsZero() {
			t.Errorf("F8: a canceled attempt counted")
		}
	}
}

// F8 (through the balancer, fake clock): after the third failure within
// the window the backend gets no request until the window ends, then one
// probe request decides.
func TestF8_PassiveThresholdsBalancer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hosts := memHosts(2)
		mem := newMem()
		bal := lb.New(memPool(t, hosts), lb.RoundRobin(), lb.WithTransport(mem),
			lb.WithPassiveHealth(health.Passive{MaxFails: 3, FailTimeout: 10 * time.Second}))
		defer bal.Close()
		reqsA := func() int64 { return bal.Stats().Backends[0].Requests }
		state := func() lb.State { return bal.Stats().Backends[0].State }

		mem.setDown(hosts[0], true)
		// Two failures, then the window passes: forgotten.
		for reqsA() < 2 {
			if code, _ := serve(bal, "/"); code != 200 {
				t.Fatalf("F8: status %d while b is up (a's failures must be retried on b)", code)
			}
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(11 * time.Second)
		for reqsA() < 4 {
			serve(bal, "/")
			time.Sleep(100 * time.Millisecond)
		}
		if s := state(); s != lb.StateUp {
			t.Fatalf("F8: 2 + 2 failures 11 s apart ejected a (%v); only 3 within 10 s should", s)
		}
		for reqsA() < 5 {
			serve(bal, "/")
			time.Sleep(100 * time.Millisecond)
		}
		if s := state(); s != lb.StateEjected {
			t.Fatalf("F8: state %v after the third failure within the window, want ejected", s)
		}
		ejectedAt := time.Now()
		n := reqsA()
		for time.Since(ejectedAt) < 10*time.Second-200*time.Millisecond {
			serve(bal, "/")
			time.Sleep(100 * time.Millisecond)
		}
		if got := reqsA() - n; got != 0 {
			t.Errorf("F8: ejected backend got %d requests within its ejection", got)
		}
		mem.setDown(hosts[0], false)
		time.Sleep(time.Second)
		for range 4 {
			serve(bal, "/")
		}
		if got := reqsA() - n; got == 0 {
			t.Errorf("F8: no request to a after its ejection ended")
		}
		if s := state(); s != lb.StateUp {
			t.Errorf("F8: a is %v after a successful probe", s)
		}
	})
}

// F9: a backend flapping every 150 ms, checked every 50 ms with rise 2
// and fall 3. One failure never changes state, each transition follows
// enough consecutive results, check times are jittered, and one target
// never has two checks at once.
func TestF9_FlappingHysteresis(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hosts := memHosts(2)
		mem := newMem()
		start := time.Now()
		flapping := func(host string) bool {
			return host == hosts[0] && (time.Since(start)/(150*time.Millisecond))%2 == 1
		}
		// fails at check time; record results with their times.
		type result struct {
			at   time.Time
			fail bool
		}
		var mu sync.Mutex
		var results []result
		check := &fakeCheck{
			sched: health.Schedule{Interval: 50 * time.Millisecond, Timeout: 20 * time.Millisecond, Rise: 2, Fall: 3, Jitter: 0.1},
			fail: func(host string) bool {
				f := flapping(host)
				if host == hosts[0] {
					mu.Lock()
					results = append(results, result{time.Now(), f})
					mu.Unlock()
				}
				return f
			},
		}
		var events []lb.Event
		bal := lb.New(memPool(t, hosts), nil, lb.WithTransport(mem), lb.WithHealthCheck(check),
			lb.WithEvents(func(e lb.Event) {
				if e.Kind == lb.EventStateChanged {
					mu.Lock()
					events = append(events, e)
					mu.Unlock()
				}
			}))
		time.Sleep(scale(10*time.Second, 60*time.Second))
		bal.Close()
		synctest.Wait()

		mu.Lock()
		defer mu.Unlock()
		if len(events) == 0 {
			t.Fatal("F9: no state change at all in 10 s of flapping")
		}
		// Replay the results: every transition must follow fall (3)
		// failures or rise (2) passes in a row.
		for _, ev := range events {
			var streak []bool
			for _, r := range results {
				if r.at.After(ev.Time) {
					break
				}
				streak = append(streak, r.fail)
			}
			need, fail := 2, false
			if ev.To == lb.StateDown {
				need, fail = 3, true
			}
			if len(streak) < need {
				t.Errorf("F9: %v->%v after %d checks", ev.From, ev.To, len(streak))
				continue
			}
			for _, f := range streak[len(streak)-need:] {
				if f != fail {
					t.Errorf("F9: %v->%v at %v without %d results in a row", ev.From, ev.To, ev.Time.Sub(start), need)
					break
				}
			}
		}
		// Transitions are bounded by what the thresholds allow.
		if max := len(results)*2/5 + 1; len(events) > max {
			t.Errorf("F9: %d transitions for %d checks", len(events), len(results))
		}
		// Jitter: the gaps between checks are not all equal.
		var gaps []float64
		for i := 1; i < len(results); i++ {
			gaps = append(gaps, float64(results[i].at.Sub(results[i-1].at)))
		}
		if sd := stddev(gaps); sd < float64(time.Millisecond) {
			t.Errorf("F9: check intervals are not jittered (stddev %v)", time.Duration(sd))
		}
		if check.maxPar > 1 {
			t.Errorf("F9: %d checks of one target ran at once", check.maxPar)
		}
		t.Logf("F9: %d checks, %d transitions in %v of flapping", len(results), len(events), time.Since(start))
	})
}

func stddev(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	var sum, sq float64
	for _, x := range xs {
		sum += x
	}
	mean := sum / float64(len(xs))
	for _, x := range xs {
		sq += (x - mean) * (x - mean)
	}
	return math.Sqrt(sq / float64(len(xs)))
}
