package lb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"time"

	"github.com/tinylb/lb/internal/grpctimeout"
	"github.com/tinylb/lb/strategy"
)

// attemptTransport is the RoundTripper relay and ReverseProxy use. Each call is
// one client request: it picks a backend, sends the request, and on
// failure decides whether it is safe to send it again to another backend.
// Because RoundTrip returns before anything is written to the
// client, a retry can never follow a response byte already sent.
type attemptTransport struct {
	b    *Balancer
	base http.RoundTripper
}

// errTryAgain tells RoundTrip's loop to make another attempt. It never
// leaves RoundTrip.
var errTryAgain = errors.New("lb: try another backend")

// RoundTrip makes attempts until one gets an answer to give the client, or
// the policy says to stop.
func (t *attemptTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	b := t.b
	l := retryLoop{b: b, base: t.base, req: req, orig: *req.URL, host: req.Host,
		idempotent: isIdempotent(req), grpc: isGRPC(req)}
	l.shieldBody()
	if b.o.sticky != nil {
		l.readSticky()
	}
	if b.o.retry.Timeout > 0 {
		l.deadline = b.now().Add(b.o.retry.Timeout)
	}
	if l.grpc {
		l.due = callDeadline(req.Header, b.now)
	}
	defer l.end()
	if b.o.retry.Budget > 0 {
		b.inflight.Add(1)
		defer b.inflight.Add(-1)
	}
	for {
		resp, err := l.try()
		if err != errTryAgain {
			if resp != nil && b.o.sticky != nil {
				l.stickyAnswer(resp)
			}
			return resp, err
		}
	}
}

// retryLoop is one client request on its way through its attempts.
type retryLoop struct {
	b    *Balancer
	base http.RoundTripper
	req  *http.Request
	// A retry must look to the strategy (a key function) exactly like the
	// first attempt, so every field SetURL changes is restored from orig
	// and host before each pick.
	orig       url.URL
	host       string
	idempotent bool
	grpc       bool      // a gRPC call: its answers are judged by grpc-status too
	deadline   time.Time // no attempt starts after it; zero: no bound
	due        time.Time // a gRPC call's own deadline, from grpc-timeout; zero: none

	// body is the request body, kept for a replay when the request may be
	// retried after it was sent. It holds the first response's tracker,
	// spare, saving an allocation.
	body  *replayBody
	spare *trackedBody

	// tried holds the backends this request was sent to. Most requests
	// need one attempt, so it is made only when a second pick comes; until
	// then first is the one backend tried.
	tried *strategy.Tried
	first *Backend

	sticky stickyState // the client's sticky cookie, with WithStickyCookie

	held     *http.Response // a response with a retryable status, kept in case no retry works
	lastErr  error
	attempts int
	retrying bool // this request holds a slot of the retry budget
}

// shieldBody takes the request's body: the replayBody ServeHTTP made, which
// relay sends as the body and ReverseProxy's path finds in the context.
func (l *retryLoop) shieldBody() {
	rb, ok := l.req.Body.(*replayBody)
	if !ok {
		rb, ok = l.req.Context().Value(bodyKey{}).(*replayBody)
	}
	if !ok {
		return // no body, or one of length 0
	}
	l.body, l.spare = rb, &rb.spare
	if rb.complete() {
		// Read ahead: the client's Expect: 100-continue was answered
		// when the body was read, and the backend need not be asked.
		delete(l.req.Header, "Expect")
	}
}

// end freezes the body (no retry can follow now), gives back the retry
// budget's slot and, if a user hook (a key function) panicked on a retry, closes the kept response so that it and
// its backend's count are not left open forever.
func (l *retryLoop) end() {
	if l.body != nil {
		l.body.freeze()
	}
	if l.retrying {
		l.b.retrying.Add(-1)
	}
	if l.held != nil {
		if p := recover(); p != nil {
			l.held.Body.Close()
			panic(p)
		}
	}
}

// try makes one attempt: it chooses a backend and sends the request. It
// returns errTryAgain when another attempt should follow.
func (l *retryLoop) try() (*http.Response, error) {
	b := l.b
	s := b.snapshot()
	if s.closed {
		return l.giveUp(ErrClosed)
	}
	if l.attempts > 0 && b.o.retry.Budget > 0 && !l.retrying {
		if !b.takeRetrySlot() {
			return l.giveUp(fmt.Errorf("retry budget exhausted: %w", l.lastErr))
		}
		l.retrying = true
	}
	*l.req.URL, l.req.Host = l.orig, l.host
	i, gated, sticky, observed := l.choose(s)
	if i < 0 {
		if l.attempts == 0 {
			return nil, ErrNoHealthyBackend
		}
		return l.giveUp(l.lastErr)
	}
	if !admit(s, i, gated, observed) {
		if sticky {
			b.stats.stickyMisses.Add(1)
		}
		return nil, errTryAgain
	}
	be := s.backends[i]
	if sticky {
		be.stats.sticky.Add(1)
	}
	be.stats.requests.Add(1)
	if l.attempts > 0 {
		be.stats.retries.Add(1)
	}
	l.attempts++
	return l.send(s, i, gated, observed)
}

// pick chooses a backend the request has not been sent to.
func (l *retryLoop) pick(s *snapshot) (int, bool) {
	if l.first != nil && l.tried == nil {
		// A second pick: from now on the tried set is needed.
		l.tried = new(strategy.Tried)
		l.tried.Add(l.first)
	}
	i, gated := l.b.pick(s, l.req, &l.tried)
	if i >= 0 {
		l.note(s.backends[i])
	}
	return i, gated
}

// note records that the request goes to be, so that no retry goes there.
func (l *retryLoop) note(be *Backend) {
	if l.tried != nil {
		l.tried.Add(be)
	} else {
		l.first = be
	}
}

// admit counts a new request in flight on backend i, unless the backend
// was drained, removed or put in maintenance after s was published: then
// the pick is undone (observed: with the picker too) and another must be
// made.
func admit(s *snapshot, i int, gated, observed bool) bool {
	be := s.backends[i]
	be.active.Add(1)
	if !be.noNew.Load() {
		return true
	}
	be.release()
	if s.observer != nil && observed {
		s.observer.Done(i, strategy.Ignored)
	}
	if gated {
		be.probeTaken.Store(false)
	}
	return false
}

// send sends the request to backend i and judges what comes back.
func (l *retryLoop) send(s *snapshot, i int, gated, observed bool) (*http.Response, error) {
	b, req, be := l.b, l.req, s.backends[i]
	pr := httputil.ProxyRequest{Out: req}
	pr.SetURL(be.url)
	if l.body != nil {
		req.Body = l.body.next()
	}
	a := attempt{b: b, s: s, i: i, gated: gated, noDone: !observed, ctx: req.Context(), start: b.now(), due: l.due}
	if l.attempts > 1 && !l.due.IsZero() {
		// A retry gets what is left of the call's time, not all of it
		// again (gRFC A6: the deadline spans every attempt).
		req.Header.Set("Grpc-Timeout", grpctimeout.Format(l.due.Sub(a.start)))
	}
	resp, err := l.base.RoundTrip(req)
	a.latency = b.now().Sub(a.start)
	be.stats.latency.observe(a.latency)
	if err != nil {
		return l.failed(&a, be, err)
	}
	return l.answered(&a, be, resp)
}

// failed settles an attempt that got no response and decides whether to
// retry it.
func (l *retryLoop) failed(a *attempt, be *Backend, err error) (*http.Response, error) {
	if cerr := l.body.clientError(); cerr != nil {
		// The client's body failed (malformed, cut short): the client's
		// fault, not the backend's, and no retry.
		a.finish(0, err, true)
		return l.giveUp(&clientBodyError{err: cerr})
	}
	canceled := a.ctx.Err() != nil
	a.finish(0, err, canceled)
	if canceled {
		return l.giveUp(err)
	}
	if a.pastDue() {
		// The backend ended the call when its deadline came (grpc-go's
		// server resets the stream then): no failure of the backend's,
		// and no time left for another attempt.
		return l.giveUp(fmt.Errorf("%w: %w", errCallDeadline, err))
	}
	l.lastErr = err
	if !l.retryable(err) || l.attempts >= l.b.o.retry.Tries {
		return l.giveUp(err)
	}
	if l.pastDeadline() {
		if l.grpc {
			// Out of time, not out of tries: DEADLINE_EXCEEDED.
			err = fmt.Errorf("%w: %w", errRetryTimeout, err)
		}
		return l.giveUp(err)
	}
	l.b.logRetry(l.req, be, err)
	return nil, errTryAgain
}

// answered takes a backend's response: it is the client's, unless it is
// one the policy retries (see retryableAnswer) and another attempt may be
// made; then it is held in case that attempt does no better.
func (l *retryLoop) answered(a *attempt, be *Backend, resp *http.Response) (*http.Response, error) {
	if resp.StatusCode == http.StatusSwitchingProtocols {
		if err := checkUpgrade(l.req, resp); err != nil {
			resp.Body.Close()
			a.finish(resp.StatusCode, err, false)
			return l.giveUp(err)
		}
	}
	a.status = resp.StatusCode
	if s := a.s; s.windows != nil && !l.b.load.measured {
		l.b.readLoad(s, a.i, resp.Header)
	}
	var fail error
	if l.grpc {
		fail = grpcFailure(resp.Header)
	}
	resp.Body = a.wrap(resp.Body, l.spare, fail)
	l.spare = nil
	if l.held != nil {
		l.held.Body.Close()
		l.held = nil
	}
	if l.retryableAnswer(fail, resp.StatusCode) && l.attempts < l.b.o.retry.Tries && !l.pastDeadline() && !a.pastDue() {
		l.held = resp
		l.lastErr = fail
		if l.lastErr == nil {
			l.lastErr = fmt.Errorf("status %d", resp.StatusCode)
		}
		l.b.logRetry(l.req, be, l.lastErr)
		return nil, errTryAgain
	}
	return resp, nil
}

// retryableAnswer reports whether a response may be sent elsewhere. A gRPC
// backend's Trailers-Only UNAVAILABLE (fail, see grpcFailure) leaves the
// call uncommitted (gRFC A6, When Retries are Valid), and it is retried as
// an attempt that failed after it was sent: only if the policy retries the
// method (gRPC calls are POSTs, so only with NonIdempotent, as
// PROTOCOL-HTTP2.md has calls "not assumed to be idempotent") and the body
// read so far was kept. Otherwise a status listed in Statuses is retried
// for idempotent requests with a kept body.
func (l *retryLoop) retryableAnswer(fail error, status int) bool {
	if fail != nil {
		return l.retryable(fail)
	}
	pol := &l.b.o.retry
	return len(pol.Statuses) > 0 && slices.Contains(pol.Statuses, status) && l.idempotent && l.body.replayable()
}

// giveUp ends the retry loop: with the response kept from a retryable
// status if there is one (the client gets the last upstream answer), else
// with err.
func (l *retryLoop) giveUp(err error) (*http.Response, error) {
	if l.held != nil {
		held := l.held
		l.held = nil
		return held, nil
	}
	if err == nil {
		err = errNoBackendLeft
	}
	var cbe *clientBodyError
	if errors.Is(err, ErrClosed) || errors.Is(err, context.Canceled) || errors.As(err, &cbe) {
		return nil, err
	}
	return nil, &attemptsError{n: l.attempts, err: err}
}

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

func (l *retryLoop) pastDeadline() bool {
	return !l.deadline.IsZero() && !l.b.now().Before(l.deadline)
}

// retryable reports whether a request whose attempt failed with err may be
// sent to another backend.
func (l *retryLoop) retryable(err error) bool {
	if l.body != nil && l.body.sent() && !l.body.replayable() {
		return false // part of a body that was not kept went out
	}
	if notSent(err) {
		return true // no byte of the request reached a backend
	}
	if l.req.Header.Get("Upgrade") != "" {
		return false // a handshake that was sent is never repeated
	}
	return l.idempotent || l.b.o.retry.NonIdempotent
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
