package reliability

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/internal/faultkit"
)

// env is one scenario's world: instrumented backends, a pool and balancer
// over them whose transport dials through a recording faultkit.Dialer, an
// HTTP server fronting the balancer, and a checking load client.
type env struct {
	t        testing.TB
	backends []*faultkit.Backend
	members  []*lb.Backend // every lb.Backend ever made, removed ones too
	pool     *lb.Pool
	bal      *lb.Balancer
	dialer   *faultkit.Dialer
	tr       *http.Transport // nil with the default transport
	front    *front
	client   *faultkit.Client
	logs     *logBuffer
}

type envConfig struct {
	n        int                         // number of backends
	backend  func(i int) faultkit.Config // backend i's config (Name is set)
	weights  []int
	strategy lb.Strategy
	opts     []lb.Option
	// defaultTransport uses the balancer's own transport (no dial
	// recording); otherwise a transport like it dials through env.dialer.
	defaultTransport bool
	transport        func(*http.Transport) // adjusts the transport
	wrap             func(http.RoundTripper) http.RoundTripper
	frontServer      func(*http.Server) // adjusts the front server
	handler          func(http.Handler) http.Handler
}

// newTransport mirrors the balancer's default transport (transport.go
// newTransport) with d as its dialer.
func newTransport(d *faultkit.Dialer) *http.Transport {
	d.Base = net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

var names = []string{"a", "b", "c", "d", "e", "f", "g", "h"}

func newEnv(t testing.TB, c envConfig) *env {
	t.Helper()
	if c.n == 0 {
		c.n = 3
	}
	e := &env{t: t, dialer: &faultkit.Dialer{}, logs: &logBuffer{}}
	for i := range c.n {
		cfg := faultkit.Config{}
		if c.backend != nil {
			cfg = c.backend(i)
		}
		cfg.Name = names[i]
		b, err := faultkit.NewBackend(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Close)
		e.backends = append(e.backends, b)
	}
	var members []*lb.Backend
	for i, b := range e.backends {
		var opts []lb.BackendOption
		if i < len(c.weights) {
			opts = append(opts, lb.WithWeight(c.weights[i]))
		}
		members = append(members, e.member(b.URL, opts...))
	}
	pool, err := lb.NewPool(members...)
	if err != nil {
		t.Fatal(err)
	}
	e.pool = pool
	opts := []lb.Option{lb.WithLogger(slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))}
	if !c.defaultTransport {
		e.tr = newTransport(e.dialer)
		if c.transport != nil {
			c.transport(e.tr)
		}
		t.Cleanup(e.tr.CloseIdleConnections)
		var rt http.RoundTripper = e.tr
		if c.wrap != nil {
			rt = c.wrap(rt)
		}
		opts = append(opts, lb.WithTransport(rt))
	}
	opts = append(opts, c.opts...)
	e.bal = lb.New(pool, c.strategy, opts...)
	t.Cleanup(func() { e.bal.Close() })
	t.Cleanup(e.assertClean)
	var h http.Handler = e.bal
	if c.handler != nil {
		h = c.handler(h)
	}
	e.front = startFront(t, h, c.frontServer)
	e.client = faultkit.NewClient(e.front.URL)
	e.client.HTTP.Timeout = 30 * time.Second
	t.Cleanup(e.client.Close)
	return e
}

// member makes an lb.Backend for rawURL and remembers it for the final
// counter check.
func (e *env) member(rawURL string, opts ...lb.BackendOption) *lb.Backend {
	e.t.Helper()
	b, err := lb.NewBackend(rawURL, opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.members = append(e.members, b)
	return b
}

// addrs returns the backends' host:port, the only addresses the balancer
// may dial.
func (e *env) addrs() []string {
	var out []string
	for _, b := range e.backends {
		out = append(out, b.Addr)
	}
	return out
}

// assertContained fails the test if the balancer dialed anything outside
// the pool (I3).
func (e *env) assertContained(extra ...string) {
	e.t.Helper()
	if out := e.dialer.Outside(append(e.addrs(), extra...)...); len(out) > 0 {
		e.t.Errorf("I3: the balancer dialed outside the pool: %v", out)
	}
}

// assertClean checks R5 after the scenario: no attempt of any backend is
// still counted in flight once the front server is closed.
func (e *env) assertClean() {
	e.t.Helper()
	e.front.Close()
	e.client.Close()
	waitFor(e.t, 3*time.Second, "in-flight counters back to 0", func() bool {
		for _, m := range e.members {
			if m.Active() != 0 {
				return false
			}
		}
		return true
	})
	for _, m := range e.members {
		if n := m.Active(); n != 0 {
			e.t.Errorf("R5: backend %s has %d attempts in flight after the scenario", m, n)
		}
	}
	if st := e.bal.Stats(); st.Active != 0 {
		e.t.Errorf("R5: Stats().Active = %d after the scenario", st.Active)
	}
}

// stat returns the balancer's stats of the backend at url.
func (e *env) stat(url string) lb.BackendStats {
	for _, s := range e.bal.Stats().Backends {
		if s.URL == url {
			return s
		}
	}
	return lb.BackendStats{}
}

// get sends one request through the front and returns its attempt.
func (e *env) do(r faultkit.Request) faultkit.Attempt {
	return e.client.Do(context.Background(), r)
}

// hits sums the arrivals of id over the backends.
func (e *env) hits(id string) int {
	n := 0
	for _, b := range e.backends {
		n += b.Hits(id)
	}
	return n
}

// requests sums the requests the backends received.
func (e *env) requests() int64 {
	var n int64
	for _, b := range e.backends {
		n += b.Requests()
	}
	return n
}

// checkIntegrity fails the test on any I1 or I2 breach among attempts.
func (e *env) checkIntegrity(as []faultkit.Attempt) faultkit.Summary {
	e.t.Helper()
	s := faultkit.Summarize(as)
	for i, b := range s.Breaches {
		if i == 10 {
			e.t.Errorf("I1: ... %d more", len(s.Breaches)-10)
			break
		}
		e.t.Errorf("I1: %s", b)
	}
	for i, b := range faultkit.AtMostOnce(as, e.backends...) {
		if i == 10 {
			break
		}
		e.t.Errorf("I2: %s", b)
	}
	return s
}

// front is the HTTP server in front of the balancer: a plain http.Server,
// as a user would run, that records the panics of its handler (to check
// that http.ErrAbortHandler comes through) and closes abruptly.
type front struct {
	URL  string
	Addr string
	srv  *http.Server
	ln   net.Listener

	handlers sync.WaitGroup
	mu       sync.Mutex
	panics   []any
	closed   atomic.Bool
	t        testing.TB
}

func startFront(t testing.TB, h http.Handler, adjust func(*http.Server)) *front {
	t.Helper()
	f := &front{t: t}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.ln = ln
	f.Addr = ln.Addr().String()
	f.URL = "http://" + f.Addr
	f.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			f.handlers.Add(1)
			defer f.handlers.Done()
			defer func() {
				if p := recover(); p != nil {
					f.mu.Lock()
					f.panics = append(f.panics, p)
					f.mu.Unlock()
					panic(p)
				}
			}()
			h.ServeHTTP(w, r)
		}),
		ErrorLog: log.New(io.Discard, "", 0),
	}
	if adjust != nil {
		adjust(f.srv)
	}
	go f.srv.Serve(ln)
	t.Cleanup(f.Close)
	return f
}

// Panics returns the values the handler panicked with.
func (f *front) Panics() []any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.panics)
}

// Close closes the server and every connection, then waits (up to 10 s)
// for the handlers to return: a handler that outlives its connection by
// that long is a leak.
func (f *front) Close() {
	if !f.closed.CompareAndSwap(false, true) {
		return
	}
	f.srv.Close()
	done := make(chan struct{})
	go func() { f.handlers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		f.t.Errorf("front handlers still running 10s after their connections closed")
	}
}

// waitFor polls cond every 5 ms until it holds or timeout passes; it
// reports whether it held. It never fails the test itself.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			t.Logf("gave up waiting for %s after %v", what, timeout)
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// mustWait is waitFor that fails the test.
func mustWait(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !waitFor(t, timeout, what, cond) {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// logBuffer collects the balancer's log output.
type logBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// goroutines returns the number of goroutines once it settles.
func goroutines() int {
	n := runtime.NumGoroutine()
	for range 50 {
		time.Sleep(2 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m == n {
			return n
		}
		n = m
	}
	return n
}

// isAbort reports whether p is http.ErrAbortHandler.
func isAbort(p any) bool {
	err, ok := p.(error)
	return ok && errors.Is(err, http.ErrAbortHandler)
}

// percent formats a share.
func percent(n, of int64) string {
	if of == 0 {
		return "0%"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(of))
}
