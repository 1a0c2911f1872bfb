package reliability

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"runtime"
	"testing"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
	"github.com/tinylb/lb/internal/faultkit"
)

// withHeaderTimeout sets the transport's per-attempt response-header
// timeout.
func withHeaderTimeout(d time.Duration) func(*http.Transport) {
	return func(tr *http.Transport) { tr.ResponseHeaderTimeout = d }
}

// F5: a backend that accepts and never answers. A lone one yields 504
// after the response-header timeout; with a healthy peer a GET is retried
// and answered within about one timeout; the health check marks it down
// after timeout x fall while the others are still probed on schedule;
// goroutines stay flat.
func TestF5_HungBackend(t *testing.T) {
	const hdr = 300 * time.Millisecond
	t.Run("alone", func(t *testing.T) {
		e := newEnv(t, envConfig{n: 1, transport: withHeaderTimeout(hdr),
			backend: func(int) faultkit.Config { return faultkit.Config{Fault: faultkit.Fault{Kind: faultkit.Hang}} }})
		for _, r := range []faultkit.Request{{N: 1}, {Body: 100, N: 1}} {
			a := e.do(r)
			if a.Status != http.StatusGatewayTimeout {
				t.Errorf("F5: %s to a hung backend: %d %v, want 504", a.Method, a.Status, a.Err)
			}
			if a.Duration < hdr*9/10 || a.Duration > 3*hdr {
				t.Errorf("F5: 504 after %v; the header timeout is %v", a.Duration, hdr)
			}
		}
	})
	t.Run("with a healthy peer", func(t *testing.T) {
		interval := 100 * time.Millisecond
		check := &health.HTTPCheck{Path: faultkit.HealthPath, Interval: interval, Timeout: 80 * time.Millisecond, Rise: 2, Fall: 2, Jitter: -1}
		e := newEnv(t, envConfig{n: 2, transport: withHeaderTimeout(hdr), opts: []lb.Option{lb.WithHealthCheck(check)}})
		a, b := e.backends[0], e.backends[1]
		a.SetFault(faultkit.Fault{Kind: faultkit.Hang})
		start := time.Now()
		for range 4 {
			at := e.do(faultkit.Request{N: 10})
			if !at.OK() || at.Backend != "b" {
				t.Errorf("F5: GET with a hung peer: %d %v from %q, want 200 from b", at.Status, at.Err, at.Backend)
			}
			if at.Duration > hdr+hdr*2 {
				t.Errorf("F5: GET answered after %v; one header timeout is %v", at.Duration, hdr)
			}
		}
		mustWait(t, 10*interval*time.Duration(check.Fall), "a marked down", func() bool { return e.stat(a.URL).State == lb.StateDown })
		down := time.Since(start)
		g0 := runtime.NumGoroutine()
		checks0 := b.HealthChecks()
		window := time.Duration(scale(20, 100)) * interval
		time.Sleep(window)
		checks := b.HealthChecks() - checks0
		want := int64(window / interval)
		if checks < want*6/10 || checks > want*14/10 {
			t.Errorf("F5: healthy peer probed %d times in %v at a %v interval (want about %d)", checks, window, interval, want)
		}
		if g := runtime.NumGoroutine(); g > g0+5 {
			t.Errorf("F5: goroutines grew from %d to %d over %v of probing a hung backend", g0, g, window)
		}
		t.Logf("F5: hung backend down after %v; peer probed %d times in %v", down.Round(time.Millisecond), checks, window)
	})
}

// F6: slow backends. Slow headers hit the header timeout; a body that is
// streaming slowly is not cut by it; the retry window bounds the whole
// request; nothing is left behind when the client gives up.
func TestF6_SlowBackend(t *testing.T) {
	const hdr = 200 * time.Millisecond
	t.Run("slow headers", func(t *testing.T) {
		e := newEnv(t, envConfig{n: 1, transport: withHeaderTimeout(hdr)})
		e.backends[0].SetBehavior(faultkit.Behavior{Delay: 5 * time.Second})
		a := e.do(faultkit.Request{N: 1})
		if a.Status != http.StatusGatewayTimeout || a.Duration > 3*hdr {
			t.Errorf("F6: slow headers: %d after %v, want 504 within 3 x %v", a.Status, a.Duration, hdr)
		}
	})
	t.Run("slow body streams past the header timeout", func(t *testing.T) {
		e := newEnv(t, envConfig{n: 1, transport: withHeaderTimeout(hdr)})
		e.backends[0].SetBehavior(faultkit.Behavior{Drip: 50 * time.Millisecond})
		a := e.do(faultkit.Request{N: 12})
		if !a.OK() || a.Duration < hdr {
			t.Errorf("F6: slow body: %d %v after %v, want the whole body after more than %v", a.Status, a.Err, a.Duration, hdr)
		}
	})
	t.Run("retry window bounds the request", func(t *testing.T) {
		e := newEnv(t, envConfig{n: 3, transport: withHeaderTimeout(hdr), opts: []lb.Option{lb.WithRetry(lb.RetryPolicy{Tries: 3, Timeout: hdr * 3 / 2})}})
		for _, b := range e.backends {
			b.SetBehavior(faultkit.Behavior{Delay: 5 * time.Second})
		}
		a := e.do(faultkit.Request{N: 1})
		if a.Status != http.StatusGatewayTimeout {
			t.Errorf("F6: %d, want 504", a.Status)
		}
		if got := e.hits(a.ID); got != 2 {
			t.Errorf("F6: %d attempts; the window (1.5 x header timeout) allows 2", got)
		}
		if a.Duration > 3*(hdr*3/2+hdr) {
			t.Errorf("F6: answered after %v", a.Duration)
		}
	})
	t.Run("client gives up", func(t *testing.T) {
		e := newEnv(t, envConfig{n: 1})
		e.backends[0].SetBehavior(faultkit.Behavior{Drip: 100 * time.Millisecond})
		e.client.HTTP.Timeout = 250 * time.Millisecond
		a := e.do(faultkit.Request{ID: "gives-up", N: 100})
		if a.Err == nil {
			t.Fatalf("F6: client did not time out: %+v", a)
		}
		mustWait(t, 2*time.Second, "backend sees the cancel", func() bool { _, ok := e.backends[0].CanceledAt("gives-up"); return ok })
		if st := e.bal.Stats(); st.Failures != 0 {
			t.Errorf("F6: a client giving up counted %d failures", st.Failures)
		}
	})
}

// F7: only the configured statuses are retried, each backend at most
// once per request and within Tries; a 404 is neither retried nor counted
// as a failure; when tries run out the client gets the last upstream
// answer; no header of a failed attempt reaches the client.
func TestF7_StatusPolicy(t *testing.T) {
	opts := []lb.Option{
		lb.WithRetry(lb.RetryPolicy{Statuses: []int{502, 503}}),
		lb.WithPassiveHealth(health.Passive{MaxFails: 1, FailStatuses: []int{500, 502, 503}}),
	}
	setup := func(t *testing.T, n int, statuses ...int) *env {
		o := opts
		if n == 4 {
			o = o[:1] // no passive health: every backend stays in
		}
		e := newEnv(t, envConfig{n: n, opts: o})
		for i, b := range e.backends {
			b.SetBehavior(faultkit.Behavior{Status: statuses[i], Header: http.Header{"X-Attempt-" + b.Name: {"1"}}})
		}
		return e
	}
	leaked := func(t *testing.T, a faultkit.Attempt) {
		for k := range a.Header {
			if len(k) > 10 && k[:10] == "X-Attempt-" && k != textproto.CanonicalMIMEHeaderKey("X-Attempt-"+a.Backend) {
				t.Errorf("F7: header %s of a failed attempt reached the client (answer from %s)", k, a.Backend)
			}
		}
	}
	t.Run("retried statuses", func(t *testing.T) {
		e := setup(t, 3, 502, 503, 200)
		for i := range 9 {
			a := e.do(faultkit.Request{ID: fmt.Sprint("f7-", i), N: 10})
			if !a.OK() || a.Backend != "c" {
				t.Errorf("F7: %d from %s, want 200 from c", a.Status, a.Backend)
			}
			for _, b := range e.backends {
				if b.Hits(a.ID) > 1 {
					t.Errorf("F7: %s tried %s %d times", a.ID, b.Name, b.Hits(a.ID))
				}
			}
			leaked(t, a)
		}
	})
	t.Run("404 and 500 are answers", func(t *testing.T) {
		e := setup(t, 2, 404, 500)
		for i := range 6 {
			a := e.do(faultkit.Request{ID: fmt.Sprint("f7-4xx-", i), N: 10})
			if e.hits(a.ID) != 1 || (a.Status != 404 && a.Status != 500) {
				t.Errorf("F7: %s: %d after %d attempts; want the first answer, 1 attempt", a.ID, a.Status, e.hits(a.ID))
			}
		}
		if s := e.stat(e.backends[0].URL); s.State != lb.StateUp || s.Failures != 0 {
			t.Errorf("F7: 404s counted as failures: state %v, %d failures", s.State, s.Failures)
		}
	})
	t.Run("exhausted", func(t *testing.T) {
		e := setup(t, 4, 503, 503, 502, 503)
		for i := range 4 {
			a := e.do(faultkit.Request{ID: fmt.Sprint("f7-ex-", i), N: 10})
			if n := e.hits(a.ID); n != 3 {
				t.Errorf("F7: %d attempts with 4 failing backends and Tries 3", n)
			}
			if a.Status != 502 && a.Status != 503 || a.Backend == "" || !a.BodyOK {
				t.Errorf("F7: tries exhausted: %d from %q (body ok %v), want the last upstream answer", a.Status, a.Backend, a.BodyOK)
			}
			leaked(t, a)
		}
	})
	t.Run("POST not retried on status", func(t *testing.T) {
		e := setup(t, 2, 503, 503)
		a := e.do(faultkit.Request{Body: 100, N: 10})
		if a.Status != 503 || e.hits(a.ID) != 1 {
			t.Errorf("F7: POST: %d after %d attempts, want 503 after 1", a.Status, e.hits(a.ID))
		}
	})
}

// F13: a body the client is still sending when the first backend answers
// 503: the retry replays every byte (hash-equal) or does not happen; a
// truncated body never reaches a backend.
func TestF13_RetryWithStreamedBody(t *testing.T) {
	for _, tc := range []struct {
		name         string
		buffer       int64
		before, rest int // bytes sent before and after A's 503
		retried      bool
	}{
		{"fits the buffer", 1 << 20, 1 << 10, 63 << 10, true},
		{"grows past the buffer after the retry", 4 << 10, 1 << 10, 63 << 10, true},
		{"overflows before the answer", 4 << 10, 64 << 10, 1 << 10, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envConfig{n: 2, opts: []lb.Option{lb.WithRetry(lb.RetryPolicy{Statuses: []int{503}, BodyBuffer: tc.buffer}), lb.WithEvents(nil)}})
			a, b := e.backends[0], e.backends[1]
			answered := make(chan struct{}, 1)
			a.SetBehavior(faultkit.Behavior{Status: 503, SkipBody: !tc.retried || tc.before < 4<<10})
			a.OnRequest(func(*http.Request) { answered <- struct{}{} })
			b.OnRequest(func(*http.Request) { answered <- struct{}{} })
			id := "f13"
			body := faultkit.Body("req:"+id, tc.before+tc.rest)
			pr, pw := io.Pipe()
			req, _ := http.NewRequest(http.MethodPut, e.front.URL+"/?n=10", pr)
			req.Header.Set(faultkit.HeaderID, id)
			done := make(chan *http.Response)
			go func() {
				resp, err := e.client.HTTP.Do(req)
				if err != nil {
					t.Errorf("F13: %v", err)
				}
				done <- resp
			}()
			pw.Write(body[:tc.before])
			<-answered                        // the first backend has the request
			time.Sleep(50 * time.Millisecond) // its 503 goes back first
			go func() {
				pw.Write(body[tc.before:])
				pw.Close()
			}()
			resp := <-done
			if resp == nil {
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			full := faultkit.SHA(body)
			for _, x := range e.backends {
				for _, got := range x.Bodies(id) {
					if got != full {
						t.Errorf("F13: %s read a complete body that differs from the one sent", x.Name)
					}
				}
			}
			for _, x := range e.backends {
				if h, n := x.Hits(id), len(x.Bodies(id)); x != a && h != n {
					t.Errorf("BUG(F13): %s received the request %d times but only %d complete bodies: a retry was sent with a body it could no longer replay", x.Name, h, n)
				}
			}
			first := a
			if a.Hits(id) == 0 {
				first = b
			}
			if first == b {
				t.Skip("the first attempt went to b; nothing to retry")
			}
			if tc.retried {
				if resp.StatusCode != 200 || b.Hits(id) != 1 || len(b.Bodies(id)) != 1 {
					t.Errorf("F13: status %d, b hits %d, bodies %v; want a retry on b with the whole body\n%s", resp.StatusCode, b.Hits(id), b.Bodies(id), e.logs.String())
				}
			} else if resp.StatusCode != 503 || len(b.Bodies(id)) != 0 {
				// The client's 64 KiB may still sit in socket buffers when
				// a's 503 arrives, so that the balancer has read no more
				// than the buffer holds: then a retry with the whole body
				// is right. What must never happen is a retry with a body
				// that was not kept (checked above: every body b got is
				// complete and hash-equal).
				if resp.StatusCode != 200 || b.Hits(id) != 1 || len(b.Bodies(id)) != 1 {
					t.Errorf("F13: status %d, b bodies %d; want a's 503 without a retry, or a retry with the whole body", resp.StatusCode, len(b.Bodies(id)))
				}
			}
		})
	}
}

// F14: one backend of three answers 503 to everything. Without a retry
// budget, amplification is bounded by Tries: attempts / requests ≤ 3.
func TestF14_RetryAmplification(t *testing.T) {
	e := newEnv(t, envConfig{n: 3, opts: []lb.Option{lb.WithRetry(lb.RetryPolicy{Statuses: []int{503}})}})
	e.backends[0].SetBehavior(faultkit.Behavior{Status: 503})
	n := e.client.Run(context.Background(), faultkit.Load{Workers: scale(16, 64), Duration: scale(time.Second, 10*time.Second),
		Next: func(w, i int) faultkit.Request { return faultkit.Request{N: 100} }})
	ratio := float64(e.requests()) / float64(n)
	if ratio > 3 {
		t.Errorf("F14: %.2f attempts per request", ratio)
	}
	s := e.checkIntegrity(e.client.Attempts())
	if s.OK != s.Requests {
		t.Errorf("F14: %v", s)
	}
	// Every backend failing: the worst case is exactly Tries.
	for _, b := range e.backends {
		b.SetBehavior(faultkit.Behavior{Status: 503})
	}
	before, m := e.requests(), 50
	for range m {
		e.do(faultkit.Request{N: 1})
	}
	worst := float64(e.requests()-before) / float64(m)
	if worst > 3 {
		t.Errorf("F14: %.2f attempts per request with every backend failing", worst)
	}
	t.Logf("F14: %.2f attempts per request with 1 of 3 backends failing (%d requests); %.2f with all failing (no retry budget: bounded by Tries = 3)", ratio, n, worst)
}
