package reliability

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
	"github.com/tinylb/lb/internal/faultkit"
)

// F3 (a): backend A reads the whole POST body, then resets the connection.
// The request was delivered: A has one copy, B none, and the client gets
// 502, whatever the body size.
func TestF3a_PostResetAfterBodyAtMostOnce(t *testing.T) {
	for _, size := range []int64{1 << 10, 64 << 10, 2 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			e := newEnv(t, envConfig{n: 2})
			a, b := e.backends[0], e.backends[1]
			a.SetBehavior(faultkit.Behavior{ResetAfterBody: true})
			toA := 0
			for i := range 12 {
				id := fmt.Sprintf("f3a-%d-%d", size, i)
				at := e.do(faultkit.Request{ID: id, Body: size, N: 10})
				switch {
				case a.Hits(id) == 1:
					toA++
					if b.Hits(id) != 0 {
						t.Errorf("%s reached A and then B: a non-idempotent request was sent twice", id)
					}
					if at.Status != http.StatusBadGateway {
						t.Errorf("%s: status %d (err %v), want 502", id, at.Status, at.Err)
					}
					if got := a.Bodies(id); len(got) != 1 || got[0] != at.SentSHA {
						t.Errorf("%s: A read bodies %v, want one with SHA-256 %s", id, got, at.SentSHA)
					}
				case b.Hits(id) == 1:
					if !at.OK() {
						t.Errorf("%s went to B only and failed: %+v", id, at)
					}
				default:
					t.Errorf("%s: hits a=%d b=%d", id, a.Hits(id), b.Hits(id))
				}
			}
			if toA == 0 {
				t.Fatal("no request went to A first")
			}
			e.checkIntegrity(e.client.Attempts())
			e.assertContained()
		})
	}
}

// F3 (b): backend A refuses the connection (dial error: nothing was
// sent). The POST is retried on B with its body intact: the SHA-256 B
// read equals the one sent, also for a body larger than the retry buffer
// (nothing of it was read before the dial failed).
func TestF3b_PostDialErrorRetriedWithIntactBody(t *testing.T) {
	for _, how := range []string{"refused", "dial-timeout", "killed"} {
		for _, size := range []int64{1 << 10, 64 << 10, 2 << 20} {
			t.Run(fmt.Sprintf("%s/%d", how, size), func(t *testing.T) {
				e := newEnv(t, envConfig{n: 2})
				a, b := e.backends[0], e.backends[1]
				switch how {
				case "refused":
					e.dialer.Refuse(a.Addr)
				case "dial-timeout":
					e.dialer.TimeoutAfter = 50 * time.Millisecond
					e.dialer.Timeout(a.Addr)
				case "killed":
					a.Kill()
				}
				for i := range 6 {
					id := fmt.Sprintf("f3b-%s-%d-%d", how, size, i)
					at := e.do(faultkit.Request{ID: id, Body: size, N: 100})
					if !at.OK() {
						t.Errorf("%s: %d %v, want 200 from B", id, at.Status, at.Err)
						continue
					}
					if at.Backend != "b" || b.Hits(id) != 1 || a.Hits(id) != 0 {
						t.Errorf("%s answered by %s, hits a=%d b=%d", id, at.Backend, a.Hits(id), b.Hits(id))
					}
					if got := b.Bodies(id); len(got) != 1 || got[0] != at.SentSHA {
						t.Errorf("%s: B read bodies %v, want %s", id, got, at.SentSHA)
					}
				}
				if how != "killed" && e.dialer.Count(a.Addr) == 0 {
					t.Fatal("A was never tried")
				}
				e.checkIntegrity(e.client.Attempts())
				e.assertContained()
			})
		}
	}
}

// F3 (c): a client's Idempotency-Key does not make a POST retryable by
// default; the NonIdempotent opt-in does, as documented, and only while
// the body fits the retry buffer.
func TestF3c_IdempotencyOptIn(t *testing.T) {
	t.Run("client key ignored", func(t *testing.T) {
		e := newEnv(t, envConfig{n: 2})
		a, b := e.backends[0], e.backends[1]
		a.SetBehavior(faultkit.Behavior{ResetAfterBody: true})
		toA := 0
		for i := range 10 {
			id := fmt.Sprintf("f3c-key-%d", i)
			at := e.do(faultkit.Request{ID: id, Body: 1024, Header: http.Header{"Idempotency-Key": {id}}})
			if a.Hits(id) == 1 {
				toA++
				if b.Hits(id) != 0 || at.Status != http.StatusBadGateway {
					t.Errorf("%s with Idempotency-Key: hits b=%d status %d; want 0 and 502", id, b.Hits(id), at.Status)
				}
			}
		}
		if toA == 0 {
			t.Fatal("no request went to A")
		}
		e.checkIntegrity(e.client.Attempts())
	})
	t.Run("NonIdempotent opt-in", func(t *testing.T) {
		e := newEnv(t, envConfig{n: 2, opts: []lb.Option{lb.WithRetry(lb.RetryPolicy{NonIdempotent: true, BodyBuffer: 256 << 10})}})
		a, b := e.backends[0], e.backends[1]
		a.SetBehavior(faultkit.Behavior{ResetAfterBody: true})
		for i := range 10 {
			for _, size := range []int64{1 << 10, 200 << 10, 1 << 20} {
				id := fmt.Sprintf("f3c-opt-%d-%d", size, i)
				at := e.do(faultkit.Request{ID: id, Body: size})
				if a.Hits(id) == 0 {
					continue
				}
				if size <= 256<<10 {
					// Retried on B with the replayed body.
					if !at.OK() || b.Hits(id) != 1 || len(b.Bodies(id)) != 1 || b.Bodies(id)[0] != at.SentSHA {
						t.Errorf("%s (opt-in, %d bytes): status %d err %v, B hits %d bodies %v", id, size, at.Status, at.Err, b.Hits(id), b.Bodies(id))
					}
				} else if b.Hits(id) != 0 || at.Status != http.StatusBadGateway {
					// Too large to replay: never sent twice.
					t.Errorf("%s (opt-in, %d bytes over the buffer): B hits %d, status %d; want 0 and 502", id, size, b.Hits(id), at.Status)
				}
			}
		}
		s := faultkit.Summarize(e.client.Attempts())
		if len(s.Breaches) > 0 {
			t.Errorf("I1: %v", s.Breaches)
		}
	})
}

// F1: b is killed under load and restarted. GET clients see no error at
// all (dial errors and resets before any response byte are retried), b
// is marked down by its health check, and takes traffic again once it is
// back.
func TestF1_KillRestartUnderLoad(t *testing.T) {
	interval := 50 * time.Millisecond
	check := &health.HTTPCheck{Path: faultkit.HealthPath, Interval: interval, Timeout: interval, Rise: 2, Fall: 3}
	// Passive checks off: they would eject b at its first failure and keep
	// it out for their 10s, whatever the active check says; this scenario
	// is about the active check.
	e := newEnv(t, envConfig{n: 3, opts: []lb.Option{lb.WithHealthCheck(check), lb.WithPassiveHealth(health.Passive{MaxFails: -1})}})
	victim := e.backends[1]
	workers := scale(8, 32)
	total := scale(1500*time.Millisecond, 10*time.Second)
	killAt, restartAt := total*3/10, total*6/10

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	start := time.Now()
	done := make(chan int)
	go func() {
		done <- e.client.Run(ctx, faultkit.Load{Workers: workers, Next: func(w, i int) faultkit.Request {
			return faultkit.Request{N: int64(rand.IntN(8 << 10)), Stream: i%10 == 0}
		}})
	}()
	time.Sleep(killAt)
	victim.KillReset()
	sawDown := waitFor(t, 20*interval*time.Duration(check.Fall), "b marked down", func() bool {
		return e.stat(victim.URL).State == lb.StateDown
	})
	if !sawDown {
		t.Errorf("b was not marked down within 20 x interval x fall after it was killed (state %v)", e.stat(victim.URL).State)
	}
	time.Sleep(max(0, restartAt-time.Since(start)))
	before := victim.Requests()
	if err := victim.Restart(); err != nil {
		t.Fatal(err)
	}
	back := waitFor(t, 20*interval*time.Duration(check.Rise), "b takes traffic again", func() bool {
		return victim.Requests() > before
	})
	time.Sleep(max(0, total-time.Since(start)))
	stop()
	n := <-done
	if !back {
		t.Errorf("b took no traffic within 20 x interval x rise after its restart")
	}
	s := e.checkIntegrity(e.client.Attempts())
	if s.OK != s.Requests {
		var errs []string
		for _, a := range e.client.Attempts() {
			if !a.OK() && len(errs) < 5 {
				errs = append(errs, fmt.Sprintf("%s: %d %v", a.ID, a.Status, a.Err))
			}
		}
		t.Errorf("F1: %d of %d GETs failed while a backend was killed and restarted: %v", s.Requests-s.OK, s.Requests, errs)
	}
	t.Logf("F1: %d GETs by %d clients over %v, %s; b took %d after restart", n, workers, time.Since(start).Round(time.Millisecond), s, victim.Requests()-before)
	e.assertContained()
}
