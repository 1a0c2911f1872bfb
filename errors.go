package lb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Sentinel errors. Errors returned by this package wrap one of them, so
// callers can test with [errors.Is].
var (
	// ErrInvalidBackend: a backend URL or option is not valid.
	ErrInvalidBackend = errors.New("lb: invalid backend")
	// ErrDuplicateBackend: a pool already holds a backend with that URL.
	ErrDuplicateBackend = errors.New("lb: duplicate backend")
	// ErrUnknownBackend: no backend with that URL is in the pool.
	ErrUnknownBackend = errors.New("lb: unknown backend")
	// ErrBackendInUse: the backend already belongs to another pool.
	ErrBackendInUse = errors.New("lb: backend already in a pool")
	// ErrNoHealthyBackend: no backend could take the request. The balancer
	// answers 503 Service Unavailable; a gRPC call gets grpc-status 14
	// UNAVAILABLE.
	ErrNoHealthyBackend = errors.New("lb: no healthy backend")
	// ErrAttemptsFailed: every attempt to reach a backend failed. The
	// balancer answers 502 Bad Gateway, or 504 Gateway Timeout when the
	// last attempt timed out; a gRPC call gets grpc-status 14 UNAVAILABLE,
	// or 4 DEADLINE_EXCEEDED after a timeout (the last attempt's, or
	// RetryPolicy.Timeout's).
	ErrAttemptsFailed = errors.New("lb: all attempts failed")
	// ErrClosed: the balancer was closed. It answers 503 (gRPC: 14
	// UNAVAILABLE).
	ErrClosed = errors.New("lb: balancer closed")
	// ErrInvalidStickyCookie: a [StickyCookie] cannot work;
	// [StickyCookie.Validate] says why.
	ErrInvalidStickyCookie = errors.New("lb: invalid sticky cookie")
)

// errNoBackendLeft ends the retry loop when every usable backend was tried.
var errNoBackendLeft = errors.New("no backend left to try")

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

// serveError answers a request the balancer could not serve: with the
// HTTP status in the README's table, or, for a gRPC call, in gRPC's terms
// (see serveGRPCError), over HTTP/2 and HTTP/1.1 fronts alike. A handler
// set with WithErrorHandler answers gRPC calls too.
func (b *Balancer) serveError(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusBadGateway
	var cbe *clientBodyError
	switch {
	case errors.As(err, &cbe) && isTimeout(cbe.err):
		// The body did not arrive within RequestBuffering.Timeout:
		// nginx's client_body_timeout answer.
		status = http.StatusRequestTimeout
		w.Header().Set("Connection", "close")
	case cbe != nil && r.Context().Err() == nil:
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
	if cbe != nil && status != http.StatusBadRequest && status != http.StatusRequestTimeout {
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
	if isGRPC(r) {
		b.serveGRPCError(w, status, err)
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

// refusePreface answers the HTTP/2 connection preface ("PRI * HTTP/2.0"),
// which net/http hands to the handler as an HTTP/1 request on a listener
// that does not speak h2c: a client that assumed h2c. It cannot be
// forwarded (it has no body and no URL), and trying would fail and count
// against a backend, so that a few such prefaces from anyone could take
// every backend out of rotation. 505 says what is wrong; nginx answers
// the same bytes with 400.
func refusePreface(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
	http.Error(w, "HTTP/2 without TLS (h2c) is not served here", http.StatusHTTPVersionNotSupported)
}
