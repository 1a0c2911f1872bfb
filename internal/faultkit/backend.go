package faultkit

import (
	"bufio"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
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

// wait blocks for d (forever if d < 0) or until the request is canceled,
// Release is called or the backend is closed. It reports whether the
// request was canceled.
func (b *Backend) wait(r *http.Request, d time.Duration) (canceled bool) {
	var tc <-chan time.Time
	if d >= 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		tc = t.C
	}
	select {
	case <-tc:
		return false
	case <-*b.release.Load():
		return false
	case <-b.stop:
		return false
	case <-r.Context().Done():
		b.mu.Lock()
		b.canceled[r.Header.Get(HeaderID)] = time.Now()
		b.mu.Unlock()
		return true
	}
}

func (b *Backend) serve(w http.ResponseWriter, r *http.Request) {
	b.handlers.Add(1)
	defer b.handlers.Done()
	bh := *b.behavior.Load()
	if r.URL.Path == HealthPath {
		b.healthHits.Add(1)
		st := bh.HealthStatus
		if st == 0 {
			st = http.StatusOK
		}
		w.Header().Set(HeaderBackend, b.Name)
		w.WriteHeader(st)
		io.WriteString(w, "ok")
		return
	}
	id := r.Header.Get(HeaderID)
	b.requests.Add(1)
	n := b.inflight.Add(1)
	defer b.inflight.Add(-1)
	for {
		m := b.maxInflight.Load()
		if n <= m || b.maxInflight.CompareAndSwap(m, n) {
			break
		}
	}
	lean := b.cfg.Lean && (r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodPut)
	b.mu.Lock()
	if !lean {
		b.hits[id]++
	}
	b.paths[r.URL.Path]++
	b.mu.Unlock()
	if f := b.onRequest.Load(); f != nil {
		(*f)(r)
	}
	if b.cfg.Handler != nil {
		b.cfg.Handler.ServeHTTP(w, r)
		return
	}
	if isUpgrade(r) {
		b.serveUpgrade(w, r, bh)
		return
	}

	if bh.SkipBody {
		http.NewResponseController(w).EnableFullDuplex()
	}
	rec := Seen{ID: id, Method: r.Method, Host: r.Host, RequestURI: r.RequestURI,
		RemoteAddr: r.RemoteAddr, Proto: r.Proto, Time: time.Now()}
	if !bh.SkipBody {
		h := sha256.New()
		rec.BodyLen, rec.BodyErr = io.Copy(h, r.Body)
		rec.BodySHA = hex.EncodeToString(h.Sum(nil))
	}
	b.mu.Lock()
	if !bh.SkipBody && rec.BodyErr == nil && !b.cfg.Lean {
		b.bodies[id] = append(b.bodies[id], rec.BodySHA)
	}
	if b.cfg.Keep {
		rec.Header = r.Header.Clone()
		rec.Trailer = r.Trailer.Clone()
		b.seen = append(b.seen, rec)
	}
	b.mu.Unlock()
	if rec.BodyErr != nil {
		return // the client's body broke: nobody to answer
	}

	if bh.ResetAfterBody {
		b.abort(w)
		return
	}
	if bh.Hang {
		b.wait(r, -1)
		return
	}
	if bh.Delay > 0 && b.wait(r, bh.Delay) {
		return
	}

	q := r.URL.Query()
	size := int64(32)
	if v, err := strconv.ParseInt(q.Get("n"), 10, 64); err == nil && v >= 0 {
		size = v
	}
	hdr := w.Header()
	for k, v := range bh.Header {
		hdr[k] = slices.Clone(v)
	}
	hdr.Set(HeaderID, id)
	hdr.Set(HeaderBackend, b.Name)
	if !bh.SkipBody {
		hdr.Set(HeaderBodySHA, rec.BodySHA)
		hdr.Set(HeaderBodyLen, strconv.FormatInt(rec.BodyLen, 10))
	}
	status := bh.Status
	if status == 0 {
		status = http.StatusOK
	}
	rc := http.NewResponseController(w)

	if r.URL.Path == "/sse" {
		b.serveSSE(w, r, rc)
		return
	}
	stream := q.Get("stream") == "1" || bh.Drip > 0
	trailer := q.Get("trailer") == "1"
	if trailer {
		hdr.Set("Trailer", TrailerBodySHA)
	} else if !stream {
		hdr.Set("Content-Length", strconv.FormatInt(size, 10))
	}
	if bh.StallAfterHeaders {
		w.WriteHeader(status)
		rc.Flush()
		b.wait(r, -1)
		return
	}
	if f := bh.ResetAfterFraction; f > 0 && f < 1 {
		hdr.Set("Content-Length", strconv.FormatInt(size, 10))
		w.WriteHeader(status)
		WriteBody(w, id, int64(f*float64(size)))
		rc.Flush()
		b.abort(w)
		return
	}
	w.WriteHeader(status)
	switch {
	case bh.Drip > 0:
		body := BodyReader(id, size)
		one := make([]byte, 1)
		for i := int64(0); i < size; i++ {
			body.Read(one)
			if _, err := w.Write(one); err != nil {
				return
			}
			rc.Flush()
			if i+1 < size && b.wait(r, bh.Drip) {
				return
			}
		}
	case stream:
		body := BodyReader(id, size)
		buf := make([]byte, 4096)
		for {
			m, _ := body.Read(buf)
			if m == 0 {
				break
			}
			if _, err := w.Write(buf[:m]); err != nil {
				return
			}
			rc.Flush()
		}
	default:
		WriteBody(w, id, size)
	}
	if trailer {
		hdr.Set(TrailerBodySHA, BodySHA(id, size))
	}
	if bh.CloseAfterResponse {
		rc.Flush()
		if c, _, err := rc.Hijack(); err == nil {
			c.Close()
		}
	}
}

// abort resets the connection of w without answering further.
func (b *Backend) abort(w http.ResponseWriter) {
	c, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	Reset(c)
}

// serveSSE sends events=N events ("data: <seq> <unix nanos>"), one every
// every=D (default 10ms).
func (b *Backend) serveSSE(w http.ResponseWriter, r *http.Request, rc *http.ResponseController) {
	q := r.URL.Query()
	events, _ := strconv.Atoi(q.Get("events"))
	every, err := time.ParseDuration(q.Get("every"))
	if err != nil {
		every = 10 * time.Millisecond
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc.Flush()
	for i := 0; i < events; i++ {
		if i > 0 && b.wait(r, every) {
			return
		}
		if _, err := fmt.Fprintf(w, "data: %d %d\n\n", i, time.Now().UnixNano()); err != nil {
			return
		}
		rc.Flush()
	}
}

func isUpgrade(r *http.Request) bool {
	for _, v := range r.Header["Connection"] {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), "upgrade") {
				return r.Header.Get("Upgrade") != ""
			}
		}
	}
	return false
}

// wsGUID is RFC 6455's key suffix.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// WebSocketAccept returns the Sec-WebSocket-Accept value for key.
func WebSocketAccept(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// serveUpgrade answers a WebSocket handshake with 101 and then echoes every
// byte it reads (the suite does not need WebSocket framing: the balancer
// tunnels bytes) until the peer closes.
func (b *Backend) serveUpgrade(w http.ResponseWriter, r *http.Request, bh Behavior) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if bh.RefuseUpgrade {
		w.Header().Set(HeaderBackend, b.Name)
		w.Header().Set(HeaderID, r.Header.Get(HeaderID))
		io.WriteString(w, "no upgrade here")
		return
	}
	if key == "" {
		http.Error(w, "missing Sec-WebSocket-Key", http.StatusBadRequest)
		return
	}
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	b.mu.Lock()
	if b.srv == nil {
		b.mu.Unlock()
		c.Close()
		return
	}
	b.hijacked[c] = struct{}{}
	b.mu.Unlock()
	b.wsOpen.Add(1)
	defer func() {
		b.wsOpen.Add(-1)
		b.mu.Lock()
		delete(b.hijacked, c)
		b.mu.Unlock()
		c.Close()
	}()
	up := bh.Upgrade
	if up == "" {
		up = r.Header.Get("Upgrade")
	}
	var sb strings.Builder
	sb.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n")
	if up != "-" {
		sb.WriteString("Upgrade: " + up + "\r\n")
	}
	sb.WriteString("Sec-WebSocket-Accept: " + WebSocketAccept(key) + "\r\n")
	sb.WriteString(HeaderBackend + ": " + b.Name + "\r\n")
	sb.WriteString(HeaderID + ": " + r.Header.Get(HeaderID) + "\r\n\r\n")
	if _, err := brw.WriteString(sb.String()); err != nil {
		return
	}
	if err := brw.Flush(); err != nil {
		return
	}
	echo(c, brw.Reader)
}

// echo copies what r reads (starting with what br buffered) back to c,
// flushing each read, until either side fails.
func echo(c net.Conn, br *bufio.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := br.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// CloseWebSockets closes every upgraded connection the backend holds.
func (b *Backend) CloseWebSockets() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for c := range b.hijacked {
		c.Close()
	}
}
