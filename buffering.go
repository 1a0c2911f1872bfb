package lb

import (
	"fmt"
	"net/http"
	"time"
)

// RequestBuffering says which request bodies the balancer reads in full
// before it chooses a backend, as nginx does with proxy_request_buffering
// (on by default there too). A client that uploads slowly then holds
// nothing but its own connection: without buffering, each slow upload
// holds a backend connection (and the backend's worker) until it ends,
// and a few hundred clients sending a byte every few seconds can take
// every connection a backend has. A buffered body also needs no second
// copy to be replayed on a retry.
//
// Only bodies of known length (Content-Length) up to Max are buffered. A
// body of unknown length streams, because it may be a stream the client
// keeps open while it reads the response (gRPC, a long upload with
// progress); so does a larger body, and one that finds no room in the
// balancer's body memory ([WithBodyMemory]). The zero value means the
// defaults named beside each field.
type RequestBuffering struct {
	// Max is the largest body read ahead, in bytes. Default 1 MiB;
	// negative turns request buffering off.
	Max int64
	// Timeout bounds the time to read a buffered body, from the moment the
	// request's headers were read; past it the client gets 408 Request
	// Timeout and its connection is closed. The server's ReadTimeout, if
	// shorter, still applies. Default 30 s; negative means no bound of
	// the balancer's own.
	Timeout time.Duration
}

func (rb RequestBuffering) withDefaults() RequestBuffering {
	if rb.Max == 0 {
		rb.Max = 1 << 20
	}
	if rb.Timeout == 0 {
		rb.Timeout = 30 * time.Second
	}
	return rb
}

// WithRequestBuffering sets which request bodies are read in full before a
// backend is chosen; see [RequestBuffering]. Buffering is on by default.
func WithRequestBuffering(rb RequestBuffering) Option {
	return optionFunc(func(o *options) { o.buffering = rb })
}

// WithBodyMemory bounds the bytes of request bodies the balancer holds at
// once, over all requests: bodies read ahead by request buffering and
// bytes kept to replay a body on a retry ([RetryPolicy.BodyBuffer]). A
// body that finds no room is not kept: it streams to the backend as it
// arrives, and its request is not retried once sent; [Stats.Unbuffered]
// counts those. No request waits for room. The default (0) is 64 MiB, or
// an eighth of GOMEMLIMIT when that is set and smaller; negative means no
// bound.
func WithBodyMemory(bytes int64) Option {
	return optionFunc(func(o *options) { o.bodyMemory = bytes })
}

// buffers reports whether r's body is to be read ahead.
func (b *Balancer) buffers(r *http.Request) bool {
	max := b.o.buffering.Max
	return max > 0 && r.ContentLength > 0 && r.ContentLength <= max && !hasToken(r.Header["Connection"], "upgrade")
}

// readAhead reads r's body into rb before a backend is chosen. A client
// that sent Expect: 100-continue has been answered by the server when the
// body was read; the backend is not asked again.
func (b *Balancer) readAhead(w http.ResponseWriter, r *http.Request, rb *replayBody) error {
	timeout := b.o.buffering.Timeout
	if srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server); ok && srv.ReadTimeout > 0 {
		// Setting a read deadline replaces the server's: keep its
		// ReadTimeout if that is stricter (counted from now, a little
		// later than the server counts it, from the request's start).
		timeout = min(timeout, srv.ReadTimeout)
		if timeout < 0 {
			timeout = srv.ReadTimeout
		}
	}
	if err := rb.prefetch(w, timeout); err != nil {
		return &clientBodyError{err: fmt.Errorf("reading the body ahead: %w", err)}
	}
	return nil
}
