package lb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tinylb/lb/health"
	"github.com/tinylb/lb/strategy"
)

// NewTransport returns a new transport with the balancer's defaults:
// HTTP/1.1 keep-alive connections sized for a proxy (256 idle per backend;
// Go's default of 2 makes a busy proxy open and close connections all the
// time), a 5 s dial timeout, a 30 s wait for response headers, no gzip of
// its own and no proxy from the environment, so that requests go to the
// pool's addresses and nowhere else. Change a field and pass it with
// [WithTransport]; the caller then closes its idle connections.
func NewTransport() *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		MaxIdleConns:          0, // no global bound; the per-host bound applies
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		ExpectContinueTimeout: 1 * time.Second,
		// A proxy passes the client's Accept-Encoding through; it must not
		// ask for gzip itself and then spend CPU decompressing.
		DisableCompression: true,
	}
}

// bufferPool recycles the 32 KiB buffers ReverseProxy copies bodies with;
// without one it allocates a buffer per request. It stores array pointers,
// which a slice converts back to without allocating.
type bufferPool struct{ p sync.Pool }

const copyBufferSize = 32 << 10

func (bp *bufferPool) Get() []byte {
	if b, ok := bp.p.Get().(*[copyBufferSize]byte); ok {
		return b[:]
	}
	return new([copyBufferSize]byte)[:]
}

func (bp *bufferPool) Put(b []byte) {
	if len(b) == copyBufferSize && cap(b) == copyBufferSize {
		bp.p.Put((*[copyBufferSize]byte)(b))
	}
}

var sharedBufferPool httputil.BufferPool = &bufferPool{}

// attemptTransport is the RoundTripper relay and ReverseProxy use. Each call is
// one client request: it picks a backend, sends the request, and on
// failure decides whether it is safe to send it again to another backend.
// Because RoundTrip returns before anything is written to the
// client, a retry can never follow a response byte already sent.
type attemptTransport struct {
	b    *Balancer
	base http.RoundTripper
}

// errNoBackendLeft ends the retry loop when every usable backend was tried.
var errNoBackendLeft = errors.New("no backend left to try")

func (t *attemptTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	b := t.b
	pol := &b.o.retry
	// tried holds the backends this request was sent to. Most requests
	// need one attempt, so it is made only when a second pick comes.
	var tried *strategy.Tried
	var first *Backend
	// A retry must look to the strategy (a key function) exactly like the
	// first attempt, so every field SetURL changes is restored before each
	// pick.
	orig := *req.URL
	host := req.Host
	idempotent := isIdempotent(req)
	// body shields the request body from the transport's Close, which
	// would end it for a retry, and keeps it for a replay when the request
	// may be retried after it was sent. It shares one allocation with the
	// first response's tracker.
	var body *replayBody
	var spare *trackedBody
	if req.Body != nil && req.Body != http.NoBody {
		rs := new(bodyState)
		body, spare = &rs.body, &rs.resp
		body.src = req.Body
		body.fill = req.ContentLength > 0
		if (idempotent || pol.NonIdempotent) && pol.Tries > 1 && req.Header.Get("Upgrade") == "" {
			body.limit = pol.BodyBuffer
			if req.ContentLength > 0 && req.ContentLength <= body.limit {
				body.buf = make([]byte, 0, req.ContentLength)
			}
		}
	}
	var deadline time.Time
	if pol.Timeout > 0 {
		deadline = b.now().Add(pol.Timeout)
	}
	var (
		lastErr  error
		held     *http.Response // a response with a retryable status, kept in case no retry works
		attempts int
	)
	defer func() {
		// A user hook (a key function) that panics on a retry must not
		// leave the kept response, and its backend's count, open forever.
		if held != nil {
			if p := recover(); p != nil {
				held.Body.Close()
				panic(p)
			}
		}
	}()
	if pol.Budget > 0 {
		b.inflight.Add(1)
		defer b.inflight.Add(-1)
	}
	retrying := false // this request holds a slot of the retry budget
	defer func() {
		if retrying {
			b.retrying.Add(-1)
		}
	}()
	for {
		s := b.snapshot()
		if s.closed {
			return t.giveUp(held, ErrClosed, 0)
		}
		if attempts > 0 && pol.Budget > 0 && !retrying {
			if !b.takeRetrySlot() {
				return t.giveUp(held, fmt.Errorf("retry budget exhausted: %w", lastErr), attempts)
			}
			retrying = true
		}
		*req.URL, req.Host = orig, host
		if first != nil && tried == nil {
			// A second pick: from now on the tried set is needed.
			tried = new(strategy.Tried)
			tried.Add(first)
		}
		i, gated := b.pick(s, req, &tried)
		if i < 0 {
			if attempts == 0 {
				return nil, ErrNoHealthyBackend
			}
			return t.giveUp(held, lastErr, attempts)
		}
		be := s.backends[i]
		if tried != nil {
			tried.Add(be)
		} else {
			first = be
		}
		be.active.Add(1)
		if be.noNew.Load() {
			// Drained, removed or put in maintenance after this snapshot
			// was published: back off and choose again.
			be.release()
			if s.observer != nil {
				s.observer.Done(i, strategy.Ignored)
			}
			if gated {
				be.probeTaken.Store(false)
			}
			continue
		}
		be.stats.requests.Add(1)
		if attempts > 0 {
			be.stats.retries.Add(1)
		}
		attempts++

		pr := httputil.ProxyRequest{Out: req}
		pr.SetURL(be.url)
		if body != nil {
			req.Body = body.next()
		}
		a := attempt{b: b, s: s, i: i, gated: gated, ctx: req.Context(), start: b.now()}
		resp, err := t.base.RoundTrip(req)
		a.latency = b.now().Sub(a.start)
		be.stats.latency.observe(a.latency)
		if err != nil {
			if cerr := body.clientError(); cerr != nil {
				// The client's body failed (malformed, cut short): the
				// client's fault, not the backend's, and no retry.
				a.finish(0, err, true)
				return t.giveUp(held, &clientBodyError{err: cerr}, attempts)
			}
			canceled := a.ctx.Err() != nil
			a.finish(0, err, canceled)
			if canceled {
				return t.giveUp(held, err, attempts)
			}
			lastErr = err
			if !t.retryable(err, req, body, idempotent) || attempts >= pol.Tries || pastDeadline(b, deadline) {
				return t.giveUp(held, err, attempts)
			}
			b.logRetry(req, be, err)
			continue
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			if err := checkUpgrade(req, resp); err != nil {
				resp.Body.Close()
				a.finish(resp.StatusCode, err, false)
				return t.giveUp(held, err, attempts)
			}
		}
		a.status = resp.StatusCode
		resp.Body = a.wrap(resp.Body, spare)
		spare = nil
		if held != nil {
			held.Body.Close()
			held = nil
		}
		if len(pol.Statuses) > 0 && slices.Contains(pol.Statuses, resp.StatusCode) &&
			idempotent && body.replayable() && attempts < pol.Tries && !pastDeadline(b, deadline) {
			held = resp
			lastErr = fmt.Errorf("status %d", resp.StatusCode)
			b.logRetry(req, be, lastErr)
			continue
		}
		return resp, nil
	}
}

// giveUp ends the retry loop: with the response kept from a retryable
// status if there is one (the client gets the last upstream answer), else
// with err.
func (t *attemptTransport) giveUp(held *http.Response, err error, attempts int) (*http.Response, error) {
	if held != nil {
		return held, nil
	}
	if err == nil {
		err = errNoBackendLeft
	}
	var cbe *clientBodyError
	if errors.Is(err, ErrClosed) || errors.Is(err, context.Canceled) || errors.As(err, &cbe) {
		return nil, err
	}
	return nil, &attemptsError{n: attempts, err: err}
}

// clientBodyError is a request that failed because reading the client's
// body failed. The balancer answers 400.
type clientBodyError struct{ err error }

func (e *clientBodyError) Error() string { return "lb: reading the request body: " + e.err.Error() }
func (e *clientBodyError) Unwrap() error { return e.err }

// attemptsError wraps the last attempt's error in ErrAttemptsFailed.
type attemptsError struct {
	n   int
	err error
}

func (e *attemptsError) Error() string {
	return fmt.Sprintf("lb: all attempts failed (%d tried): %v", e.n, e.err)
}

func (e *attemptsError) Unwrap() []error { return []error{ErrAttemptsFailed, e.err} }

// takeRetrySlot reserves a place among the requests retrying at once, if
// the retry budget has one: Budget × the requests in flight, and at least
// MinRetries. Under a wide outage this caps the extra load retries put on
// the backends that are left, instead of multiplying it by Tries.
func (b *Balancer) takeRetrySlot() bool {
	pol := &b.o.retry
	allowed := max(int64(pol.Budget*float64(b.inflight.Load())), int64(pol.MinRetries))
	if b.retrying.Add(1) > allowed {
		b.retrying.Add(-1)
		b.stats.budgetDenied.Add(1)
		return false
	}
	return true
}

func pastDeadline(b *Balancer, deadline time.Time) bool {
	return !deadline.IsZero() && !b.now().Before(deadline)
}

// retryable reports whether a request whose attempt failed with err may be
// sent to another backend.
func (t *attemptTransport) retryable(err error, req *http.Request, body *replayBody, idempotent bool) bool {
	if body != nil && body.sentBytes() > 0 && !body.replayable() {
		return false // part of a body that was not kept went out
	}
	if notSent(err) {
		return true // no byte of the request reached a backend
	}
	if req.Header.Get("Upgrade") != "" {
		return false // a handshake that was sent is never repeated
	}
	return idempotent || t.b.o.retry.NonIdempotent
}

// notSent reports whether err means the request never left: the
// connection to the backend could not be made.
func notSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns)
}

// isIdempotent reports whether RFC 9110 §9.2.2 lets r be sent twice. A
// client's Idempotency-Key header does not change the answer.
func isIdempotent(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// checkUpgrade rejects a 101 answer that does not switch to the protocol
// the client asked for. ReverseProxy rejects it too, but without closing
// the backend connection, which would leave the attempt open forever.
func checkUpgrade(req *http.Request, resp *http.Response) error {
	want, got := upgradeType(req.Header), upgradeType(resp.Header)
	if want == "" || !strings.EqualFold(want, got) {
		return fmt.Errorf("backend switched protocol to %q when %q was requested", got, want)
	}
	if _, ok := resp.Body.(io.ReadWriteCloser); !ok {
		return errors.New("101 response with a body that cannot be written")
	}
	return nil
}

// upgradeType returns the protocol h asks to switch to, if its Connection
// header has the upgrade token.
func upgradeType(h http.Header) string {
	if hasToken(h["Connection"], "upgrade") {
		return h.Get("Upgrade")
	}
	return ""
}

// pick asks the snapshot's picker for a backend. A backend whose next
// request is a probe after an ejection takes one request at a time; a pick
// of it while its probe is out is undone and another backend is chosen.
func (b *Balancer) pick(s *snapshot, r *http.Request, tried **strategy.Tried) (int, bool) {
	for {
		i := s.picker.Pick(r, *tried)
		if i < 0 || i >= len(s.backends) {
			return -1, false
		}
		if s.gated == nil || !s.gated[i] {
			return i, false
		}
		be := s.backends[i]
		if be.probeTaken.CompareAndSwap(false, true) {
			return i, true
		}
		if s.observer != nil {
			s.observer.Done(i, strategy.Ignored)
		}
		if *tried == nil {
			*tried = new(strategy.Tried)
		}
		(*tried).Add(be)
	}
}

// attempt is the bookkeeping of one try on one backend, settled exactly
// once by finish.
type attempt struct {
	b       *Balancer
	s       *snapshot
	i       int
	gated   bool
	ctx     context.Context
	start   time.Time
	latency time.Duration // to response headers, or to the error
	status  int
}

// finish settles the attempt: the in-flight count, passive health, the
// strategy's feedback, a probe's verdict.
func (a *attempt) finish(status int, err error, canceled bool) {
	b, s, i := a.b, a.s, a.i
	be := s.backends[i]
	be.release()
	res := strategy.Success
	var ejectUntil time.Time
	if tr := s.trackers[i]; tr != nil {
		now := b.now()
		var failed bool
		failed, ejectUntil = tr.Observe(health.Outcome{
			Time: now, Err: err, Status: status, Latency: now.Sub(a.start), Canceled: canceled,
		})
		if failed {
			res = strategy.Failure
		}
	} else if err != nil {
		res = strategy.Failure
	}
	if canceled {
		res, ejectUntil = strategy.Ignored, time.Time{}
	}
	if res == strategy.Failure {
		be.stats.failures.Add(1)
	}
	if s.observer != nil {
		s.observer.Done(i, res)
	}
	if b.events != nil {
		b.emit(Event{Kind: EventAttemptDone, Time: b.now(), Backend: be, Status: status, Err: err,
			Latency: a.latency, Failed: res == strategy.Failure})
	}
	if a.gated {
		b.probeDone(be, res)
		return
	}
	if !ejectUntil.IsZero() && len(s.backends) > 1 {
		b.eject(be, ejectUntil, "passive health: too many failed requests")
	}
}

// bodyState is what a request with a body needs, in one allocation.
type bodyState struct {
	body replayBody
	resp trackedBody
}

// wrap returns rc wrapped so that the attempt is settled when the body is
// closed: a streamed or upgraded response counts as in flight until then.
// spare, if not nil, is an unused trackedBody to fill instead of a new one.
func (a *attempt) wrap(rc io.ReadCloser, spare *trackedBody) io.ReadCloser {
	tb := spare
	if tb == nil {
		tb = new(trackedBody)
	}
	tb.rc, tb.a = rc, *a
	if rwc, ok := rc.(io.ReadWriteCloser); ok && a.status == http.StatusSwitchingProtocols {
		return &trackedConn{trackedBody: tb, w: rwc}
	}
	return tb
}

// trackedBody is a response body that settles its attempt on Close, as a
// failure if reading it failed (the backend died mid-response).
type trackedBody struct {
	rc      io.ReadCloser
	a       attempt
	readErr atomic.Pointer[error]
	done    atomic.Bool
}

func (t *trackedBody) Read(p []byte) (int, error) {
	n, err := t.rc.Read(p)
	if err != nil && err != io.EOF {
		t.noteErr(err)
	}
	return n, err
}

// noteErr keeps the first read error. It is a function of its own so that
// Read's err does not escape and allocate on every call.
func (t *trackedBody) noteErr(err error) {
	t.readErr.CompareAndSwap(nil, &err)
}

func (t *trackedBody) Close() error {
	err := t.rc.Close()
	if t.done.CompareAndSwap(false, true) {
		var rerr error
		if p := t.readErr.Load(); p != nil {
			rerr = *p
		}
		canceled := rerr != nil && t.a.ctx.Err() != nil
		t.a.finish(t.a.status, rerr, canceled)
	}
	return err
}

// trackedConn is the body of a 101 response: the backend connection, which
// ReverseProxy writes to as well as reads from.
type trackedConn struct {
	*trackedBody
	w io.Writer
}

func (t *trackedConn) Write(p []byte) (int, error) { return t.w.Write(p) }

// replayBody shields a request body from the transport's Close (which
// would end it for a retry) and lets it be sent again on a retry. The bytes
// read from the client are kept, up to limit, as they stream to the first
// backend; a later attempt replays them and then goes on reading from the
// client.
//
// Only one reader reads from the client at a time (readMu); the kept bytes
// are guarded by mu, which is never held while waiting for the client. An
// earlier attempt's reader that is still waiting in the client's Read when
// a retry starts keeps what it gets for the new attempt (even past limit:
// those bytes are gone from the client otherwise) and then stops.
type replayBody struct {
	src   io.ReadCloser
	limit int64
	fill  bool // the body has a known length: see readSrc

	read      atomic.Int64          // bytes read from src
	overflow  atomic.Bool           // bytes were read and not kept: no replay
	clientErr atomic.Pointer[error] // a read error from the client's body

	readMu sync.Mutex // serializes reads of src

	mu     sync.Mutex // guards buf, srcErr and gen
	buf    []byte     // the bytes read from src, while they fit in limit
	srcErr error      // sticky error (io.EOF at the end) from src
	gen    int        // the attempt allowed to read

	first replayReader // the first attempt's reader, saving an allocation
}

// next returns the reader for a new attempt, invalidating earlier ones.
func (rb *replayBody) next() io.ReadCloser {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	rb.gen++
	if rb.gen == 1 {
		rb.first = replayReader{rb: rb, gen: 1}
		return &rb.first
	}
	return &replayReader{rb: rb, gen: rb.gen}
}

// replayable reports whether every byte read so far is kept. A nil body is
// trivially replayable.
func (rb *replayBody) replayable() bool {
	return rb == nil || !rb.overflow.Load()
}

func (rb *replayBody) sentBytes() int64 { return rb.read.Load() }

// clientError returns the error the client's body failed with, if it did:
// a malformed chunked body, a client that hung up mid-upload. Such a
// failure is the client's, not the backend's.
func (rb *replayBody) clientError() error {
	if rb == nil {
		return nil
	}
	if p := rb.clientErr.Load(); p != nil {
		return *p
	}
	return nil
}

var errStaleBody = errors.New("lb: request body read by an abandoned attempt")

// replayReader is one attempt's view of a replayBody.
type replayReader struct {
	rb     *replayBody
	gen    int
	off    int64 // position in the body stream; touched only by this attempt
	closed atomic.Bool
}

func (r *replayReader) Read(p []byte) (int, error) {
	rb := r.rb
	for {
		if n, err, done := r.fromBuffer(p); done {
			return n, err
		}
		rb.readMu.Lock()
		// While waiting, an abandoned reader may have added bytes to the
		// buffer, or a retry may have replaced this reader: look again.
		rb.mu.Lock()
		again := r.gen != rb.gen || r.off < int64(len(rb.buf)) || rb.srcErr != nil
		rb.mu.Unlock()
		if again {
			rb.readMu.Unlock()
			continue
		}
		n, err := rb.readSrc(p)
		rb.read.Add(int64(n))
		if err != nil && err != io.EOF {
			rb.noteClientErr(err)
		}
		rb.mu.Lock()
		stale := r.gen != rb.gen
		if !rb.overflow.Load() {
			if stale || int64(len(rb.buf)+n) <= rb.limit {
				rb.buf = append(rb.buf, p[:n]...)
			} else {
				rb.overflow.Store(true)
				rb.buf = nil
			}
		}
		if err != nil {
			rb.srcErr = err
		}
		rb.mu.Unlock()
		rb.readMu.Unlock()
		if stale {
			return 0, errStaleBody
		}
		r.off += int64(n)
		return n, err
	}
}

// readSrc reads from the client's body. A body of known length is read
// until p is full (or the body ends): the transport hands each read to a
// write on the backend connection, and the first read of a body returns
// just what the server had buffered with the headers, so without this a
// 64 KiB upload went out in three writes of 4, 32 and 28 KiB instead of
// two. Holding up to len(p) (32 KiB) of a fixed-length upload until the
// rest arrives changes nothing a backend can rely on; nginx holds whole
// bodies. A chunked body passes through as it comes, since it may be a
// stream.
func (rb *replayBody) readSrc(p []byte) (int, error) {
	n, err := rb.src.Read(p)
	for rb.fill && err == nil && n > 0 && n < len(p) {
		var m int
		m, err = rb.src.Read(p[n:])
		if m == 0 && err == nil {
			break // a reader that returns nothing: do not spin on it
		}
		n += m
	}
	return n, err
}

// fromBuffer serves a read from the kept bytes, or says why the reader
// cannot read; done is false when the next bytes must come from the client.
func (r *replayReader) fromBuffer(p []byte) (n int, err error, done bool) {
	rb := r.rb
	rb.mu.Lock()
	defer rb.mu.Unlock()
	switch {
	case r.gen != rb.gen || r.closed.Load():
		return 0, errStaleBody, true
	case r.off < int64(len(rb.buf)):
		n = copy(p, rb.buf[r.off:])
		r.off += int64(n)
		return n, nil, true
	case r.off < rb.read.Load():
		return 0, errStaleBody, true // bytes this attempt needs were not kept
	case rb.srcErr != nil:
		return 0, rb.srcErr, true
	}
	return 0, nil, false
}

func (rb *replayBody) noteClientErr(err error) {
	rb.clientErr.CompareAndSwap(nil, &err)
}

// Close ends this attempt's use of the body; the client's body itself is
// closed by ReverseProxy when the request is over.
func (r *replayReader) Close() error {
	r.closed.Store(true)
	return nil
}

// serveError answers a request the balancer could not serve.
func (b *Balancer) serveError(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusBadGateway
	var cbe *clientBodyError
	switch {
	case errors.As(err, &cbe) && r.Context().Err() == nil:
		status = http.StatusBadRequest
	case r.Context().Err() != nil && !errors.Is(err, ErrNoHealthyBackend):
		// The client went away: not a backend failure. 499 is what nginx
		// logs for it; nobody will read the answer.
		status = 499
		if !errors.Is(err, context.Canceled) {
			err = fmt.Errorf("%w: %w", context.Canceled, err)
		}
	case errors.Is(err, ErrNoHealthyBackend), errors.Is(err, ErrClosed):
		status = http.StatusServiceUnavailable
	case isTimeout(err):
		status = http.StatusGatewayTimeout
	}
	if cbe != nil && status != http.StatusBadRequest {
		status = 499 // a client that hung up mid-upload
	}
	if !errors.Is(err, ErrAttemptsFailed) && status == http.StatusBadGateway {
		err = &attemptsError{n: 1, err: err}
	}
	switch status {
	case http.StatusServiceUnavailable:
		b.stats.unavailable.Add(1)
	case http.StatusBadGateway, http.StatusGatewayTimeout:
		b.stats.failed.Add(1)
	}
	if b.log.Enabled(r.Context(), slog.LevelWarn) && status != 499 {
		b.log.LogAttrs(r.Context(), slog.LevelWarn, "lb: request failed",
			slog.Int("status", status), slog.String("method", r.Method),
			slog.String("path", r.URL.Path), slog.String("error", err.Error()))
	} else if status == 499 {
		b.log.LogAttrs(r.Context(), slog.LevelDebug, "lb: client closed request",
			slog.Int("status", status), slog.String("method", r.Method), slog.String("path", r.URL.Path))
	}
	if h := b.o.errorHandler; h != nil {
		h(w, r, err)
		return
	}
	if status == http.StatusServiceUnavailable && b.o.retryAfter > 0 {
		secs := max(int64(b.o.retryAfter/time.Second), 1)
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	http.Error(w, http.StatusText(status), status)
}

// isTimeout reports whether err is a timeout waiting for a backend.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// logRetry records that an attempt is retried on another backend.
func (b *Balancer) logRetry(r *http.Request, be *Backend, err error) {
	if b.events != nil {
		b.emit(Event{Kind: EventRetry, Time: b.now(), Backend: be, Err: err})
	}
	if b.log.Enabled(r.Context(), slog.LevelInfo) {
		b.log.LogAttrs(r.Context(), slog.LevelInfo, "lb: retrying on another backend",
			slog.String("backend", be.key), slog.String("method", r.Method), slog.String("error", err.Error()))
	}
}
