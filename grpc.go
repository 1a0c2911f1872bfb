package lb

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tinylb/lb/internal/grpctimeout"
)

// gRPC over HTTP/2 (grpc/grpc doc/PROTOCOL-HTTP2.md) carries a call's
// outcome in grpc-status and grpc-message, not in the HTTP status. A gRPC
// client takes an answer that is not HTTP 200 with content-type
// application/grpc for a broken intermediary (grpc-go: "unexpected
// content-type") and loses what went wrong, so the balancer answers the
// gRPC calls it cannot serve in gRPC's terms (serveGRPCError), and judges
// gRPC backends' answers as gRPC does (grpcFailure):
//
//	balancer's HTTP answer        gRPC answer (HTTP 200, Trailers-Only)
//	503, no healthy backend       14 UNAVAILABLE "lb: no healthy backend"
//	503, balancer closed          14 UNAVAILABLE "lb: balancer closed"
//	502, all attempts failed      14 UNAVAILABLE "lb: all attempts failed"
//	504, last attempt timed out   4 DEADLINE_EXCEEDED "lb: backend timed out"
//	502, RetryPolicy.Timeout cut  4 DEADLINE_EXCEEDED "lb: retry timeout passed"
//	  the retries short
//	502, failed after the call's  4 DEADLINE_EXCEEDED "lb: the call's deadline passed"
//	  grpc-timeout (see below)
//	408, body read ahead too slow 4 DEADLINE_EXCEEDED "lb: request body timeout"
//	400, client's body broken     13 INTERNAL "lb: reading the request body failed"
//	                              (grpc/grpc doc/http-grpc-status-mapping.md: 400)
//	499, client went away         1 CANCELLED "lb: client went away"
//
// The balancer makes no overload answer of its own (no 429, no shedding
// 503), so it never sends 8 RESOURCE_EXHAUSTED: a request the retry budget
// refuses gets its last attempt's failure, as over HTTP.
//
// A grpc-timeout request header is passed on and not enforced here: the
// gRPC server tracks the deadline it gives (PROTOCOL-HTTP2.md, Timeout) and
// the client enforces its own, cancelling the call when it expires; that
// cancel reaches the balancer as a client that went away, which is no
// backend's failure and is never retried. The server's side can come
// first: grpc-go's server resets the stream when the deadline it was given
// passes, which may reach the balancer before the client's cancel. An
// attempt that fails once the call's deadline has passed is therefore no
// backend's failure either; it is answered 4 DEADLINE_EXCEEDED "lb: the
// call's deadline passed" and never retried, and a retry made before then
// carries only the time left in its grpc-timeout.

// grpcCode is a gRPC status code, numbered as in grpc/grpc
// doc/statuscodes.md and grpc-go's codes package.
type grpcCode int

const (
	grpcCanceled         grpcCode = 1
	grpcDeadlineExceeded grpcCode = 4
	grpcInternal         grpcCode = 13
	grpcUnavailable      grpcCode = 14
)

func (c grpcCode) String() string {
	switch c {
	case grpcCanceled:
		return "CANCELLED"
	case grpcDeadlineExceeded:
		return "DEADLINE_EXCEEDED"
	case grpcInternal:
		return "INTERNAL"
	case grpcUnavailable:
		return "UNAVAILABLE"
	}
	return "code " + strconv.Itoa(int(c))
}

// isGRPC reports whether r is a gRPC call: a POST with gRPC's content
// type ([isGRPCContent]). A GET, the common request, costs one comparison.
func isGRPC(r *http.Request) bool {
	return r.Method == http.MethodPost && isGRPCContent(r.Header)
}

// grpcStatusError is a gRPC backend's Trailers-Only UNAVAILABLE: the error
// its attempt ends with for passive health, events and the retry log.
type grpcStatusError struct {
	code grpcCode
	msg  string // grpc-message as the backend sent it, percent-encoded
}

func (e *grpcStatusError) Error() string {
	s := "backend answered grpc-status " + strconv.Itoa(int(e.code)) + " (" + e.code.String() + ")"
	if e.msg != "" {
		s += ": " + e.msg
	}
	return s
}

// grpcFailure returns the failure a gRPC call's response headers stand
// for, or nil. Only a Trailers-Only answer (grpc-status in the headers:
// PROTOCOL-HTTP2.md, Responses, "permitted for calls that produce an
// immediate error") with 14 UNAVAILABLE is one: the backend says it
// cannot serve now, as a refused connection says, and gRFC A6 (When
// Retries are Valid) leaves such a call uncommitted, since only
// Response-Headers commit it. Every other status in the headers, and any
// status in trailers after a body, is the application's answer.
//
// grpc-status is read whatever the HTTP status: a client must use it when
// it is there (doc/http-grpc-status-mapping.md).
func grpcFailure(h http.Header) error {
	v, ok := h["Grpc-Status"]
	if !ok || len(v) == 0 || strings.TrimSpace(v[0]) != "14" {
		return nil
	}
	e := &grpcStatusError{code: grpcUnavailable}
	if m := h["Grpc-Message"]; len(m) > 0 {
		e.msg = m[0]
	}
	return e
}

// errRetryTimeout marks the failure of a gRPC call whose retries
// RetryPolicy.Timeout cut short: the call's deadline applies across all
// its attempts (gRFC A6, Maximum Number of Retries), and a call that ran
// out of time is DEADLINE_EXCEEDED, not UNAVAILABLE. HTTP requests are not
// marked: they keep the last attempt's 502.
var errRetryTimeout = errors.New("retry timeout passed")

// errCallDeadline marks the failure of a gRPC call that came when the
// call's own deadline, its grpc-timeout, had passed: DEADLINE_EXCEEDED, as
// the client itself reports it.
var errCallDeadline = errors.New("the call's deadline passed")

// callDeadline is when the gRPC call whose headers are h runs out of time:
// now plus its grpc-timeout, or zero if it has none (or one too long to
// matter). The balancer does not enforce it (see above); it uses it to
// tell a backend that ended a call at its deadline from one that failed,
// and to give a retry only the time that is left.
func callDeadline(h http.Header, now func() time.Time) time.Time {
	v := h["Grpc-Timeout"]
	if len(v) == 0 {
		return time.Time{}
	}
	d, ok := grpctimeout.Parse(v[0])
	if !ok || d > maxCallTimeout {
		return time.Time{}
	}
	return now().Add(d)
}

// maxCallTimeout bounds the grpc-timeout the balancer tracks: a longer one
// is no deadline in practice, and now+d must not overflow.
const maxCallTimeout = 100 * 365 * 24 * time.Hour

// serveGRPCError answers a gRPC call the balancer could not serve as a gRPC
// server answers a call that fails at once: HTTP 200, content-type
// application/grpc and a Trailers-Only answer, grpc-status and a
// percent-encoded grpc-message in the headers and no body
// (PROTOCOL-HTTP2.md, Responses). status is the HTTP answer serveError
// chose; the mapping is in the table above. With [WithRetryAfter], a 503
// carries gRFC A6's server pushback, grpc-retry-pushback-ms, for clients
// whose retry policy retries UNAVAILABLE.
func (b *Balancer) serveGRPCError(w http.ResponseWriter, status int, err error) {
	code, msg := grpcAnswer(status, err)
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(int(code)))
	h.Set("Grpc-Message", encodeGRPCMessage(msg))
	if status == http.StatusServiceUnavailable && b.o.retryAfter > 0 {
		ms := min(max(b.o.retryAfter.Milliseconds(), 1), math.MaxInt32) // A6: a signed 32-bit integer
		h.Set("Grpc-Retry-Pushback-Ms", strconv.FormatInt(ms, 10))
	}
	w.WriteHeader(http.StatusOK)
}

// grpcAnswer maps the balancer's HTTP answer to a gRPC status and message.
// The messages are fixed: like the HTTP answers they never name a backend.
func grpcAnswer(status int, err error) (grpcCode, string) {
	switch {
	case status == 499:
		return grpcCanceled, "lb: client went away"
	case errors.Is(err, errRetryTimeout):
		return grpcDeadlineExceeded, "lb: " + errRetryTimeout.Error()
	case errors.Is(err, errCallDeadline):
		return grpcDeadlineExceeded, "lb: " + errCallDeadline.Error()
	case status == http.StatusGatewayTimeout:
		return grpcDeadlineExceeded, "lb: backend timed out"
	case status == http.StatusRequestTimeout:
		return grpcDeadlineExceeded, "lb: request body timeout"
	case status == http.StatusBadRequest:
		return grpcInternal, "lb: reading the request body failed"
	case errors.Is(err, ErrClosed):
		return grpcUnavailable, ErrClosed.Error()
	case status == http.StatusServiceUnavailable:
		return grpcUnavailable, ErrNoHealthyBackend.Error()
	}
	return grpcUnavailable, ErrAttemptsFailed.Error()
}

// encodeGRPCMessage percent-encodes msg for grpc-message
// (PROTOCOL-HTTP2.md, Status-Message): msg as UTF-8, invalid sequences
// replaced by U+FFFD, with every byte outside space to '~', and '%'
// itself, written as '%' and two upper-case hex digits.
func encodeGRPCMessage(msg string) string {
	msg = strings.ToValidUTF8(msg, "\uFFFD")
	n := 0
	for i := 0; i < len(msg); i++ {
		if grpcEscaped(msg[i]) {
			n++
		}
	}
	if n == 0 {
		return msg
	}
	const hex = "0123456789ABCDEF"
	var sb strings.Builder
	sb.Grow(len(msg) + 2*n)
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if grpcEscaped(c) {
			sb.WriteByte('%')
			sb.WriteByte(hex[c>>4])
			sb.WriteByte(hex[c&0xf])
		} else {
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

// grpcEscaped reports whether c is percent-encoded in a grpc-message.
func grpcEscaped(c byte) bool { return c < ' ' || c > '~' || c == '%' }
