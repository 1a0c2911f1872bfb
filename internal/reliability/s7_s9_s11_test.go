package reliability

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
	"testing"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
	"github.com/tinylb/lb/internal/faultkit"
)

// S7: the answers the balancer makes itself (502, 503, 504) carry no
// backend address, dial error, stack trace or credentials; backend URLs
// with credentials are refused without echoing the password.
func TestS7_ErrorHygiene(t *testing.T) {
	e := newEnv(t, envConfig{n: 2, transport: withHeaderTimeout(200 * time.Millisecond),
		opts: []lb.Option{lb.WithPassiveHealth(health.Passive{MaxFails: 1, FailTimeout: time.Minute})}})
	a, b := e.backends[0], e.backends[1]
	secrets := []string{a.Addr, b.Addr, "127.0.0.1", "dial", "refused", "connect:", "goroutine", "panic", ".go:", "timeout awaiting", "EOF", "reset"}
	leaks := func(what string, at faultkit.Attempt, body []byte) {
		t.Helper()
		var hay strings.Builder
		hay.Write(body)
		for k, vs := range at.Header {
			fmt.Fprintf(&hay, "\n%s: %s", k, strings.Join(vs, ", "))
		}
		for _, s := range secrets {
			if strings.Contains(strings.ToLower(hay.String()), strings.ToLower(s)) {
				t.Errorf("S7: %s answer (%d) reveals %q:\n%s", what, at.Status, s, hay.String())
			}
		}
	}
	get := func() (faultkit.Attempt, []byte) {
		req, _ := http.NewRequest("GET", e.front.URL+"/", nil)
		resp, err := e.client.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return faultkit.Attempt{Status: resp.StatusCode, Header: resp.Header}, body
	}
	// 504: both hang.
	a.SetFault(faultkit.Fault{Kind: faultkit.Hang})
	b.SetFault(faultkit.Fault{Kind: faultkit.Hang})
	at, body := get()
	if at.Status != http.StatusGatewayTimeout {
		t.Errorf("S7: status %d, want 504", at.Status)
	}
	leaks("504", at, body)
	// 502: refused dials (both ejected after).
	a.Kill()
	b.Kill()
	e.bal.Close()
	e2 := newEnv(t, envConfig{n: 2})
	e2.backends[0].Kill()
	e2.backends[1].Kill()
	e, a, b = e2, e2.backends[0], e2.backends[1]
	secrets[0], secrets[1] = a.Addr, b.Addr
	at, body = get()
	if at.Status != http.StatusBadGateway {
		t.Errorf("S7: status %d, want 502", at.Status)
	}
	leaks("502", at, body)
	// 503: closed.
	e.bal.Close()
	at, body = get()
	if at.Status != http.StatusServiceUnavailable {
		t.Errorf("S7: status %d, want 503", at.Status)
	}
	leaks("503", at, body)

	// Credentials in backend URLs are refused, and errors do not repeat them.
	for _, u := range []string{"http://user:s3cr3t@10.0.0.1:80", "http://s3cr3t@10.0.0.1", "https://u:s3cr3t@h/x"} {
		_, err := lb.NewBackend(u)
		if err == nil {
			t.Errorf("S7: NewBackend(%q) accepted credentials", u)
		} else if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("S7: NewBackend error reveals the password: %v", err)
		}
		var p lb.Pool
		if err := p.Remove(u); err == nil || strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("S7: Pool.Remove error %v", err)
		}
	}
	if strings.Contains(e.logs.String(), "s3cr3t") {
		t.Errorf("S7: the logs hold a password")
	}
}

// S9: slowloris and slow uploads against the server settings the README
// documents (ReadHeaderTimeout, ReadTimeout, IdleTimeout). Drippers are
// closed at the header timeout; normal clients see no error meanwhile;
// slow uploads are cut at the read timeout and leave nothing in flight.
func TestS9_Slowloris(t *testing.T) {
	const rht, rt = 300 * time.Millisecond, 1500 * time.Millisecond
	e := newEnv(t, envConfig{n: 2, frontServer: func(s *http.Server) {
		s.ReadHeaderTimeout = rht
		s.ReadTimeout = rt
		s.IdleTimeout = 5 * time.Second
	}})
	drippers := scale(100, 500)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var worst time.Duration
	var open int
	for range drippers {
		wg.Go(func() {
			c, err := net.Dial("tcp", e.front.Addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			start := time.Now()
			head := "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 200)
			for i := 0; i < len(head); i++ {
				if _, err := c.Write([]byte{head[i]}); err != nil {
					break
				}
				c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
				var one [1]byte
				if _, err := c.Read(one[:]); err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						continue // still open
					}
					break // closed by the server
				}
			}
			d := time.Since(start)
			mu.Lock()
			worst = max(worst, d)
			if d > 3*rht {
				open++
			}
			mu.Unlock()
		})
	}
	// Normal traffic meanwhile.
	e.client.Run(context.Background(), faultkit.Load{Workers: 8, Duration: 2 * rht, Next: func(w, i int) faultkit.Request { return faultkit.Request{N: 100} }})
	wg.Wait()
	s := e.checkIntegrity(e.client.Attempts())
	if s.OK != s.Requests {
		t.Errorf("S9: normal clients failed during the slowloris: %v", s)
	}
	if open > 0 {
		t.Errorf("S9: %d of %d drippers kept their connection longer than 3 x ReadHeaderTimeout (worst %v)", open, drippers, worst)
	}
	// Slow uploads: one byte every 20 ms, cut by ReadTimeout.
	uploads := scale(20, 200)
	start := time.Now()
	var cut int
	for range uploads {
		wg.Go(func() {
			c, err := net.Dial("tcp", e.front.Addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
			for range 100000 {
				if _, err := c.Write([]byte{'x'}); err != nil {
					break
				}
				time.Sleep(20 * time.Millisecond)
				if time.Since(start) > 4*rt {
					return
				}
			}
			mu.Lock()
			cut++
			mu.Unlock()
		})
	}
	wg.Wait()
	if cut != uploads {
		t.Errorf("S9: %d of %d slow uploads were not cut within 4 x ReadTimeout", uploads-cut, uploads)
	}
	for _, b := range e.backends {
		if n := len(b.Bodies("")); n != 0 {
			t.Errorf("S9: %s read %d complete bodies from slow uploads", b.Name, n)
		}
	}
	t.Logf("S9: %d drippers closed within %v (ReadHeaderTimeout %v); %d slow uploads cut; normal traffic %v", drippers, worst.Round(time.Millisecond), rht, uploads, s)
}

// S11: health checks are isolated. An endless health body is read up to
// MaxBody only, or not at all; redirects are not followed; the check uses
// its own Host and headers; checks never use the proxy's pooled
// connections.
func TestS11_HealthCheckIsolation(t *testing.T) {
	var otherHits int64
	var mu sync.Mutex
	var seenHost, seenHdr string
	other := faultkit.MustBackend(faultkit.Config{Name: "other", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		otherHits++
		mu.Unlock()
	})})
	defer other.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("/endless", func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("x", 4096))
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/healthz", http.StatusFound)
	})
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seenHost, seenHdr = r.Host, r.Header.Get("X-Check")
		mu.Unlock()
	})
	hb := faultkit.MustBackend(faultkit.Config{Name: "h", Handler: mux})
	defer hb.Close()
	target, _ := url.Parse(hb.URL)
	ctx := context.Background()

	c := &health.HTTPCheck{Path: "/endless", Body: "needle", MaxBody: 64 << 10, Timeout: 2 * time.Second}
	start := time.Now()
	err := c.Check(ctx, target)
	if err == nil || time.Since(start) > time.Second {
		t.Errorf("S11: endless body with Body set: %v after %v; want a failure well before the 2 s timeout", err, time.Since(start))
	}
	c = &health.HTTPCheck{Path: "/endless", Timeout: 2 * time.Second}
	start = time.Now()
	if err := c.Check(ctx, target); err != nil || time.Since(start) > time.Second {
		t.Errorf("S11: endless body without Body: %v after %v; want a pass at once (status only)", err, time.Since(start))
	}
	c = &health.HTTPCheck{Path: "/redirect"}
	if err := c.Check(ctx, target); err != nil {
		t.Errorf("S11: 302 within 200-399: %v", err)
	}
	c = &health.HTTPCheck{Path: "/redirect", StatusMax: 299}
	if err := c.Check(ctx, target); err == nil {
		t.Errorf("S11: 302 passed with StatusMax 299")
	}
	mu.Lock()
	if otherHits != 0 {
		t.Errorf("S11: the redirect was followed %d times", otherHits)
	}
	mu.Unlock()
	c = &health.HTTPCheck{Path: "/whoami", Host: "health.internal", Header: http.Header{"X-Check": {"1"}}}
	if err := c.Check(ctx, target); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if seenHost != "health.internal" || seenHdr != "1" {
		t.Errorf("S11: the check sent Host %q, X-Check %q", seenHost, seenHdr)
	}
	mu.Unlock()
	mustWait(t, 2*time.Second, "endless handlers ended", func() bool { return hb.InFlight() == 0 })

	// Checks beside real traffic: each check opens and closes its own
	// connection; the proxy keeps reusing its own.
	e := newEnv(t, envConfig{n: 1, opts: []lb.Option{lb.WithHealthCheck(&health.HTTPCheck{Path: faultkit.HealthPath, Interval: 10 * time.Millisecond})}})
	e.client.Run(ctx, faultkit.Load{Workers: 4, Duration: 500 * time.Millisecond, Next: func(w, i int) faultkit.Request { return faultkit.Request{N: 100} }})
	b := e.backends[0]
	checks := b.HealthChecks()
	proxyConns := b.NewConns() - checks
	if checks < 10 || proxyConns > 8 {
		t.Errorf("S11: %d checks, %d other connections for 4 clients", checks, proxyConns)
	}
	if s := e.checkIntegrity(e.client.Attempts()); s.OK != s.Requests {
		t.Errorf("S11: %v", s)
	}
	t.Logf("S11: %d checks beside %d requests; the proxy used %d connections", checks, len(e.client.Attempts()), proxyConns)
}
