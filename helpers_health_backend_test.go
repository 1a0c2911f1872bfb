package lb_test

// The test backend of the end-to-end health-checking tests
// (health_*_test.go, and alldown_test.go and slowstart_test.go): hcServer,
// which can fail its health checks, fail or hold its other requests, be
// killed and be restarted on the same port, and the pools made of it.
//
// Helpers here are prefixed hc so that they never clash with the helpers of
// the core test files of the same package.

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tinylb/lb"
)

// ---------------------------------------------------------------------------
// Test backends

// Modes of an hcServer for requests other than /healthz.
const (
	hcOK       int32 = iota // answer 200 with the server's name
	hcFail                  // hijack the connection and close it: a transport error
	hc503                   // answer 503
	hc500                   // answer 500
	hc404                   // answer 404
	hcHold                  // wait until released, then answer 200
	hcHang                  // answer nothing until the client goes away
	hcHangBody              // send headers and part of the body, then hang
)

type hcConnKey struct{}

// hcConnUse is what one backend connection carried.
type hcConnUse struct {
	health   int  // /healthz requests
	closeHdr int  // of those, requests asking to close the connection
	proxied  int  // other requests
	idle     int  // times ConnState reported it idle (kept alive)
	closed   bool // ConnState reported it closed
}

// hcServer is a test backend on 127.0.0.1 that can fail its health checks,
// fail or hold its other requests, be killed and be restarted on the same
// port. It counts everything it sees.
type hcServer struct {
	name string
	addr string
	url  string

	healthy    atomic.Bool                                // /healthz answer, unless healthFn is set
	healthFn   atomic.Pointer[func(n int64) bool]         // decides check n (1-based)
	healthHook atomic.Pointer[func(n int64, pass bool)]   // called before check n is answered
	healthHits atomic.Int64                               // /healthz requests received
	failIf     atomic.Pointer[func(r *http.Request) bool] // requests to fail (hijack+close)
	mode       atomic.Int32                               // answer to other requests
	hits       atomic.Int64                               // other requests received
	held       atomic.Int64                               // requests waiting now (hold and hang modes)
	active     atomic.Int64                               // handlers running

	stop     chan struct{} // closed at the end of the test: nothing waits any more
	stopOnce sync.Once

	mu    sync.Mutex
	rel   chan struct{} // hcHold waits for it; nil: go on at once
	gate  chan struct{} // /healthz waits for it; nil: go on at once
	srv   *http.Server
	done  chan struct{} // closed when srv.Serve returned
	conns map[int64]*hcConnUse
	ids   map[net.Conn]int64
	seq   atomic.Int64
	// checkTimes holds the arrival time of every /healthz request.
	checkTimes []time.Time
}

// startHC starts a healthy backend answering 200.
func startHC(t testing.TB, name string) *hcServer {
	t.Helper()
	s := &hcServer{name: name, stop: make(chan struct{}), conns: make(map[int64]*hcConnUse), ids: make(map[net.Conn]int64)}
	s.healthy.Store(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	s.addr = ln.Addr().String()
	s.url = "http://" + s.addr
	s.serve(ln)
	t.Cleanup(func() {
		s.unblock()
		s.kill()
	})
	return s
}

func (s *hcServer) serve(ln net.Listener) {
	srv := &http.Server{
		Handler: s,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			id := s.seq.Add(1)
			s.mu.Lock()
			s.ids[c] = id
			s.conns[id] = &hcConnUse{}
			s.mu.Unlock()
			return context.WithValue(ctx, hcConnKey{}, id)
		},
		ConnState: func(c net.Conn, st http.ConnState) {
			s.mu.Lock()
			defer s.mu.Unlock()
			u := s.conns[s.ids[c]]
			if u == nil {
				return
			}
			switch st {
			case http.StateIdle:
				u.idle++
			case http.StateClosed, http.StateHijacked:
				u.closed = true
				delete(s.ids, c)
			}
		},
		ErrorLog:          log.New(io.Discard, "", 0),
		ReadHeaderTimeout: 10 * time.Second,
	}
	done := make(chan struct{})
	s.mu.Lock()
	s.srv, s.done = srv, done
	s.mu.Unlock()
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
}

// kill closes the listener and every connection, as a crashing process
// would, and waits for the handlers to return.
func (s *hcServer) kill() {
	s.mu.Lock()
	srv, done := s.srv, s.done
	s.srv = nil
	s.mu.Unlock()
	if srv == nil {
		return
	}
	_ = srv.Close()
	<-done
	deadline := time.Now().Add(5 * time.Second)
	for s.active.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}

// restart listens again on the same address.
func (s *hcServer) restart(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		ln, err := net.Listen("tcp", s.addr)
		if err == nil {
			s.serve(ln)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("restart %s on %s: %v", s.name, s.addr, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// unblock releases every waiting handler for good.
func (s *hcServer) unblock() { s.stopOnce.Do(func() { close(s.stop) }) }

// holdRequests makes other requests wait until releaseHeld.
func (s *hcServer) holdRequests() {
	s.mu.Lock()
	s.rel = make(chan struct{})
	s.mu.Unlock()
	s.mode.Store(hcHold)
}

func (s *hcServer) releaseHeld() {
	s.mu.Lock()
	if s.rel != nil {
		close(s.rel)
		s.rel = nil
	}
	s.mu.Unlock()
}

// gateHealth makes /healthz wait until openHealth.
func (s *hcServer) gateHealth() {
	s.mu.Lock()
	s.gate = make(chan struct{})
	s.mu.Unlock()
}

func (s *hcServer) openHealth() {
	s.mu.Lock()
	if s.gate != nil {
		close(s.gate)
		s.gate = nil
	}
	s.mu.Unlock()
}

func (s *hcServer) setHealthFn(f func(n int64) bool) { s.healthFn.Store(&f) }

func (s *hcServer) setFailIf(f func(r *http.Request) bool) { s.failIf.Store(&f) }

// maxCheckGap returns the longest time between two checks that arrived
// within [from, to].
func (s *hcServer) maxCheckGap(from, to time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var gap time.Duration
	prev := from
	for _, at := range s.checkTimes {
		if at.Before(from) || at.After(to) {
			continue
		}
		gap = max(gap, at.Sub(prev))
		prev = at
	}
	return max(gap, to.Sub(prev))
}

// connUses returns a copy of what each connection carried.
func (s *hcServer) connUses() map[int64]hcConnUse {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[int64]hcConnUse, len(s.conns))
	for id, u := range s.conns {
		m[id] = *u
	}
	return m
}

func (s *hcServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.active.Add(1)
	defer s.active.Add(-1)
	id, _ := r.Context().Value(hcConnKey{}).(int64)
	isHealth := r.URL.Path == "/healthz"
	s.mu.Lock()
	u := s.conns[id]
	if u == nil {
		u = &hcConnUse{}
		s.conns[id] = u
	}
	if isHealth {
		u.health++
		if r.Close {
			u.closeHdr++
		}
	} else {
		u.proxied++
	}
	s.mu.Unlock()
	if isHealth {
		s.serveHealth(w, r)
		return
	}
	s.hits.Add(1)
	if f := s.failIf.Load(); f != nil && (*f)(r) {
		hcHijackClose(w)
		return
	}
	switch s.mode.Load() {
	case hcFail:
		hcHijackClose(w)
	case hc503:
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
	case hc500:
		http.Error(w, "internal", http.StatusInternalServerError)
	case hc404:
		http.Error(w, "not found", http.StatusNotFound)
	case hcHold:
		s.mu.Lock()
		rel := s.rel
		s.mu.Unlock()
		if rel != nil {
			s.held.Add(1)
			select {
			case <-rel:
			case <-s.stop:
			case <-r.Context().Done():
			}
			s.held.Add(-1)
		}
		s.answer(w)
	case hcHang:
		s.held.Add(1)
		select {
		case <-s.stop:
		case <-r.Context().Done():
		}
		s.held.Add(-1)
	case hcHangBody:
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		s.held.Add(1)
		select {
		case <-s.stop:
		case <-r.Context().Done():
		}
		s.held.Add(-1)
	default:
		s.answer(w)
	}
}

func (s *hcServer) answer(w http.ResponseWriter) {
	w.Header().Set("X-Backend", s.name)
	io.WriteString(w, s.name)
}

func (s *hcServer) serveHealth(w http.ResponseWriter, r *http.Request) {
	n := s.healthHits.Add(1)
	s.mu.Lock()
	s.checkTimes = append(s.checkTimes, time.Now())
	gate := s.gate
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-s.stop:
			return
		case <-r.Context().Done():
			return
		}
	}
	pass := s.healthy.Load()
	if f := s.healthFn.Load(); f != nil {
		pass = (*f)(n)
	}
	if h := s.healthHook.Load(); h != nil {
		(*h)(n, pass)
	}
	if !pass {
		http.Error(w, "unhealthy", http.StatusServiceUnavailable)
		return
	}
	io.WriteString(w, "ok")
}

func hcHijackClose(w http.ResponseWriter) {
	c, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		c.Close()
	}
}

// hcPool makes a pool of one backend per server, with the given options for
// all of them.
func hcPool(t testing.TB, servers []*hcServer, opts ...lb.BackendOption) *lb.Pool {
	t.Helper()
	bes := make([]*lb.Backend, len(servers))
	for i, s := range servers {
		be, err := lb.NewBackend(s.url, opts...)
		if err != nil {
			t.Fatalf("NewBackend: %v", err)
		}
		bes[i] = be
	}
	p, err := lb.NewPool(bes...)
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	return p
}

func hcNewBackend(t testing.TB, url string, opts ...lb.BackendOption) *lb.Backend {
	t.Helper()
	be, err := lb.NewBackend(url, opts...)
	if err != nil {
		t.Fatalf("NewBackend(%s): %v", url, err)
	}
	return be
}
