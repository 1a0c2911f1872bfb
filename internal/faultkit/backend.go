package faultkit

import (
	"errors"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Headers of the instrumented backend.
const (
	// HeaderID carries the request ID; the backend echoes it.
	HeaderID = "X-Req-Id"
	// HeaderBackend names the backend that answered.
	HeaderBackend = "X-Backend"
	// HeaderBodySHA is the hex SHA-256 of the request body the backend read.
	HeaderBodySHA = "X-Body-Sha256"
	// HeaderBodyLen is the length of the request body the backend read.
	HeaderBodyLen = "X-Body-Len"
	// TrailerBodySHA is a trailer holding the hex SHA-256 of the response
	// body, sent when the request's query has trailer=1.
	TrailerBodySHA = "X-Resp-Sha256"
)

// HealthPath is answered by a Backend as a health endpoint: 200 "ok" (or
// Behavior.HealthStatus), counted apart from the other requests.
const HealthPath = "/healthz"

// Behavior is how a [Backend] answers. The zero Behavior answers every
// request at once with 200 and the deterministic body of its ID. Each
// wait below ends early when the request is canceled, when [Backend.Release]
// is called, or when the backend is closed.
type Behavior struct {
	// Status answers with this status instead of 200 (the body is still the
	// deterministic one).
	Status int
	// Header holds extra response headers.
	Header http.Header
	// Delay waits this long after reading the request body, before
	// answering.
	Delay time.Duration
	// SkipBody answers without reading the request body, at once: the
	// handler runs full duplex, so that net/http does not first read (up
	// to 256 KiB of) the body before sending the answer.
	SkipBody bool
	// ResetAfterBody reads the whole request body, records it, then resets
	// the connection without answering: the request was delivered, the
	// answer never comes.
	ResetAfterBody bool
	// Hang reads the request body, then never answers.
	Hang bool
	// StallAfterHeaders sends the response headers, flushes them, then
	// never sends the body.
	StallAfterHeaders bool
	// ResetAfterFraction, when in (0, 1), sends the headers (with the full
	// Content-Length) and this fraction of the body, flushes them, then
	// resets the connection.
	ResetAfterFraction float64
	// Drip sends the response body one byte at a time, flushing each and
	// waiting Drip before the next.
	Drip time.Duration
	// CloseAfterResponse closes the connection after each complete
	// response without saying so (no Connection: close): a backend whose
	// keep-alive connections go stale at once.
	CloseAfterResponse bool
	// HealthStatus is the status of HealthPath; zero means 200.
	HealthStatus int
	// Upgrade is the Upgrade header of a WebSocket 101 answer: "" echoes
	// the requested protocol, "-" leaves the header out.
	Upgrade string
	// RefuseUpgrade answers an upgrade request with a plain 200.
	RefuseUpgrade bool
}

// Seen is what a Backend recorded of one request.
type Seen struct {
	ID, Method, Host, RequestURI, RemoteAddr, Proto string
	Header                                          http.Header
	Trailer                                         http.Header
	BodyLen                                         int64
	BodySHA                                         string
	BodyErr                                         error // nil when the body was read to its end
	Time                                            time.Time
}

// Config configures a [Backend].
type Config struct {
	// Name is the X-Backend value.
	Name string
	// Addr to listen on; default "127.0.0.1:0".
	Addr string
	// Fault is the listener fault at start.
	Fault Fault
	// IdleTimeout, ReadHeaderTimeout of the server. Zero: none.
	IdleTimeout, ReadHeaderTimeout time.Duration
	// Keep records a [Seen] for every request, headers included. Without
	// it only counts and body hashes are kept.
	Keep bool
	// Handler, when set, answers requests instead of the instrumented
	// answer, after the request was counted (the body is not read).
	Handler http.Handler
	// Lean keeps per-ID counts for non-idempotent requests only, and no
	// body hashes: for long soaks where memory is measured.
	Lean bool
}

// Backend is an instrumented HTTP server on loopback. See the package
// documentation. Its methods are safe for concurrent use.
type Backend struct {
	Name string
	Addr string // host:port, fixed for the backend's life (across restarts)
	URL  string // "http://" + Addr

	cfg Config

	mu       sync.Mutex
	ln       *Listener
	srv      *http.Server
	serving  sync.WaitGroup // the Serve goroutine
	conns    map[net.Conn]http.ConnState
	hijacked map[net.Conn]struct{}
	hits     map[string]int
	bodies   map[string][]string // hex SHA-256 of each fully read body, by ID
	canceled map[string]time.Time
	seen     []Seen
	paths    map[string]int
	closed   bool

	behavior  atomic.Pointer[Behavior]
	release   atomic.Pointer[chan struct{}]
	stop      chan struct{} // closed by Close
	onRequest atomic.Pointer[func(*http.Request)]
	handlers  sync.WaitGroup

	requests, healthHits  atomic.Int64
	newConns, openConns   atomic.Int64
	inflight, maxInflight atomic.Int64
	wsOpen                atomic.Int64
	lives                 atomic.Int64
}

// NewBackend starts a backend.
func NewBackend(cfg Config) (*Backend, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	b := &Backend{
		Name:     cfg.Name,
		cfg:      cfg,
		conns:    make(map[net.Conn]http.ConnState),
		hijacked: make(map[net.Conn]struct{}),
		hits:     make(map[string]int),
		bodies:   make(map[string][]string),
		canceled: make(map[string]time.Time),
		paths:    make(map[string]int),
		stop:     make(chan struct{}),
	}
	b.behavior.Store(&Behavior{})
	ch := make(chan struct{})
	b.release.Store(&ch)
	ln, err := Listen(cfg.Addr)
	if err != nil {
		return nil, err
	}
	ln.SetFault(cfg.Fault)
	b.Addr = ln.Addr().String()
	b.URL = "http://" + b.Addr
	b.start(ln)
	return b, nil
}

// MustBackend is NewBackend that panics on error.
func MustBackend(cfg Config) *Backend {
	b, err := NewBackend(cfg)
	if err != nil {
		panic(err)
	}
	return b
}

func (b *Backend) start(ln *Listener) {
	srv := &http.Server{
		Handler:           http.HandlerFunc(b.serve),
		IdleTimeout:       b.cfg.IdleTimeout,
		ReadHeaderTimeout: b.cfg.ReadHeaderTimeout,
		ConnState:         b.connState,
		ErrorLog:          discardLogger,
	}
	b.mu.Lock()
	b.ln, b.srv = ln, srv
	b.mu.Unlock()
	b.lives.Add(1)
	b.serving.Go(func() { srv.Serve(ln) })
}

func (b *Backend) connState(c net.Conn, s http.ConnState) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch s {
	case http.StateNew:
		b.newConns.Add(1)
		b.openConns.Add(1)
		b.conns[c] = s
	case http.StateClosed, http.StateHijacked:
		if _, ok := b.conns[c]; ok {
			b.openConns.Add(-1)
			delete(b.conns, c)
		}
	default:
		if _, ok := b.conns[c]; ok {
			b.conns[c] = s
		}
	}
}

// SetBehavior changes how the backend answers from now on.
func (b *Backend) SetBehavior(bh Behavior) { b.behavior.Store(&bh) }

// Behavior returns the behavior in effect.
func (b *Backend) Behavior() Behavior { return *b.behavior.Load() }

// SetFault changes the listener fault for connections accepted from now on.
func (b *Backend) SetFault(f Fault) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cfg.Fault = f
	if b.ln != nil {
		b.ln.SetFault(f)
	}
}

// OnRequest sets a function called with each request (health checks
// excepted) as it arrives, before its body is read.
func (b *Backend) OnRequest(f func(*http.Request)) {
	if f == nil {
		b.onRequest.Store(nil)
		return
	}
	b.onRequest.Store(&f)
}

// Release ends the waits of the requests stalled now (Hang, Delay,
// StallAfterHeaders).
func (b *Backend) Release() {
	ch := make(chan struct{})
	old := b.release.Swap(&ch)
	close(*old)
}

// Kill stops the backend abruptly: it closes the listener and every
// connection (hijacked ones included), as a crashed process would. The
// address stays reserved for Restart only by convention.
func (b *Backend) Kill() { b.kill(false) }

// KillReset is Kill with an RST on every connection instead of a FIN.
func (b *Backend) KillReset() { b.kill(true) }

func (b *Backend) kill(reset bool) {
	b.mu.Lock()
	srv := b.srv
	b.srv, b.ln = nil, nil
	var conns []net.Conn
	for c := range b.conns {
		conns = append(conns, c)
	}
	for c := range b.hijacked {
		conns = append(conns, c)
	}
	clear(b.hijacked)
	b.mu.Unlock()
	if srv == nil {
		return
	}
	if reset {
		for _, c := range conns {
			Reset(c)
		}
	}
	srv.Close()
	for _, c := range conns {
		c.Close()
	}
	b.serving.Wait()
}

// Restart listens again on the backend's address after Kill. It retries
// for up to 2 s while the address is still in use.
func (b *Backend) Restart() error {
	b.mu.Lock()
	running := b.srv != nil
	closed := b.closed
	f := b.cfg.Fault
	b.mu.Unlock()
	if closed {
		return errors.New("faultkit: restart of a closed backend")
	}
	if running {
		return nil
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		ln, err := Listen(b.Addr)
		if err == nil {
			ln.SetFault(f)
			b.start(ln)
			return nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Running reports whether the backend is listening.
func (b *Backend) Running() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.srv != nil
}

// Close kills the backend for good and waits for its handlers.
func (b *Backend) Close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	b.mu.Unlock()
	close(b.stop)
	b.kill(false)
	b.handlers.Wait()
}

// Requests returns the number of requests received, health checks
// excepted.
func (b *Backend) Requests() int64 { return b.requests.Load() }

// HealthChecks returns the number of requests to HealthPath.
func (b *Backend) HealthChecks() int64 { return b.healthHits.Load() }

// NewConns returns the number of connections accepted by the server.
func (b *Backend) NewConns() int64 { return b.newConns.Load() }

// OpenConns returns the number of server connections open now, hijacked
// ones excepted.
func (b *Backend) OpenConns() int64 { return b.openConns.Load() }

// InFlight returns the number of requests being handled now.
func (b *Backend) InFlight() int64 { return b.inflight.Load() }

// MaxInFlight returns the most requests handled at once so far.
func (b *Backend) MaxInFlight() int64 { return b.maxInflight.Load() }

// WebSockets returns the number of upgraded connections open now.
func (b *Backend) WebSockets() int64 { return b.wsOpen.Load() }

// Hits returns how many times a request with the given ID arrived.
func (b *Backend) Hits(id string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hits[id]
}

// HitMap returns a copy of the per-ID arrival counts.
func (b *Backend) HitMap() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := make(map[string]int, len(b.hits))
	for k, v := range b.hits {
		m[k] = v
	}
	return m
}

// TakeHits returns the per-ID arrival counts and forgets them, and the
// cancellation times: a long run drains them as it goes, so that its
// records stay bounded.
func (b *Backend) TakeHits() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := b.hits
	b.hits = make(map[string]int)
	b.canceled = make(map[string]time.Time)
	return h
}

// Bodies returns the SHA-256 of each request body with the given ID that
// was read to its end.
func (b *Backend) Bodies(id string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.bodies[id])
}

// CanceledAt returns when the backend saw the request with the given ID
// canceled while it waited.
func (b *Backend) CanceledAt(id string) (time.Time, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, ok := b.canceled[id]
	return t, ok
}

// Seen returns the records of the requests received, with Config.Keep.
func (b *Backend) Seen() []Seen {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.seen)
}

// SeenID returns the records of the requests with the given ID.
func (b *Backend) SeenID(id string) []Seen {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []Seen
	for _, s := range b.seen {
		if s.ID == id {
			out = append(out, s)
		}
	}
	return out
}

// Path returns how many requests arrived for the given path.
func (b *Backend) Path(p string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.paths[p]
}

// ResetCounts forgets every count and record.
func (b *Backend) ResetCounts() {
	b.mu.Lock()
	defer b.mu.Unlock()
	// New maps: clear keeps a map's buckets, and tests measure the heap.
	b.hits = make(map[string]int)
	b.bodies = make(map[string][]string)
	b.canceled = make(map[string]time.Time)
	b.paths = make(map[string]int)
	b.seen = nil
	b.requests.Store(0)
	b.healthHits.Store(0)
	b.newConns.Store(0)
	b.maxInflight.Store(0)
}

var discardLogger = newDiscardLogger()
