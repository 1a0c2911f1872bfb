package lb

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/textproto"
	"strings"
	"sync"
)

// relay proxies one request that neither asks to upgrade the connection
// nor needs a periodic flush: every request but those, which go through
// httputil.ReverseProxy. It does what ReverseProxy.ServeHTTP does in Rewrite
// mode (Go 1.26), step for step, without the costs that made up a third of
// the proxy's CPU per request:
//
//   - hop-by-hop headers are removed with one pass over the header map and
//     a switch, not eighteen Header.Del calls that each validate and
//     canonicalize a constant name and hash it;
//   - whether to flush at once is decided from the response's
//     Content-Type without mime.ParseMediaType, which allocates a map and
//     strings for every response to find out it is not text/event-stream;
//   - the trace context is set by Clone itself, saving a second copy of
//     the request, and the ProxyRequest stays on the stack;
//   - response header values are handed over, not copied value by value,
//     when nothing else can hold on to the backend's header map.
//
// The results are the same: the tests run every behaviour over both paths
// (forwarding headers, hop-by-hop and Connection-listed headers, Te:
// trailers, unparsable query parameters, 1xx relays, trailers announced and
// not, streaming flushes, errors mid-body).
func (b *Balancer) relay(w http.ResponseWriter, r *http.Request, rb *replayBody) {
	rt := &relayTrace{w: w}
	rt.trace.Got1xxResponse = func(code int, h textproto.MIMEHeader) error {
		return rt.got1xx(code, h)
	}
	out := b.outgoing(r, rb, &rt.trace)
	res, err := b.transport.RoundTrip(out)
	rt.done()
	if err != nil {
		b.serveError(w, out, err)
		return
	}
	// A 101 comes back only for a request that asked to upgrade, and those
	// go through ReverseProxy; attemptTransport rejects any other.
	announced, err := b.writeHeader(w, res)
	if err != nil {
		b.serveError(w, out, err)
		return
	}
	// ReverseProxy flushes every write of a server-sent event stream and
	// of a body of unknown length, headers first; with FlushInterval < 0,
	// every response. (FlushInterval > 0 goes through ReverseProxy.)
	flush := b.o.flushInterval < 0 || res.ContentLength == -1 || isEventStream(res.Header)
	if flush {
		_ = http.NewResponseController(w).Flush()
	}
	if err := b.copyBody(w, res.Body, flush); err != nil {
		defer res.Body.Close()
		// Mid-stream, all that is left is to abort the response; the
		// server recovers this panic and cuts the connection, so the
		// client sees a broken answer, never a short one that looks
		// whole. Outside a server (a test calling ServeHTTP) there is
		// nobody to recover it: ReverseProxy returns, and so do we.
		if r.Context().Value(http.ServerContextKey) == nil {
			b.log.Debug("lb: copying the response body", slog.Any("error", err))
			return
		}
		panic(http.ErrAbortHandler)
	}
	res.Body.Close() // now, to fill in res.Trailer
	copyTrailers(w, res, announced)
}

// outgoing makes the request to send to a backend from the client's r, as
// ReverseProxy's Rewrite mode does.
func (b *Balancer) outgoing(r *http.Request, rb *replayBody, trace *httptrace.ClientTrace) *http.Request {
	out := r.Clone(httptrace.WithClientTrace(r.Context(), trace))
	// The body goes as rb, the replayBody ServeHTTP made of the client's:
	// the transport's Close does not close the client's body (that would
	// hang a 100-continue request), and it fails reads once the handler
	// has returned (golang/go#46866). No body is nil, not NoBody, so that
	// the transport may retry (golang/go#16036).
	out.Body = nil
	if rb != nil {
		out.Body = rb
	}
	if out.Header == nil {
		out.Header = make(http.Header)
	}
	out.Close = false
	stripHopByHop(out.Header)
	if hasToken(r.Header["Te"], "trailers") {
		// golang/go#21096: tell the backend trailers are welcome when
		// the client said they were.
		out.Header["Te"] = []string{"trailers"}
	}
	// Client-provided forwarding headers go; rewrite sets new ones.
	delete(out.Header, "Forwarded")
	delete(out.Header, "X-Forwarded-For")
	delete(out.Header, "X-Forwarded-Host")
	delete(out.Header, "X-Forwarded-Proto")
	out.URL.RawQuery = cleanQuery(out.URL.RawQuery)
	pr := httputil.ProxyRequest{In: r, Out: out}
	b.rewrite(&pr)
	out = pr.Out
	if _, ok := out.Header["User-Agent"]; !ok {
		// Send no User-Agent rather than Go's default.
		out.Header["User-Agent"] = []string{""}
	}
	return out
}

// writeHeader sends the client the backend's status and headers, after
// the user's ModifyResponse hook. It returns how many trailers res
// announced.
func (b *Balancer) writeHeader(w http.ResponseWriter, res *http.Response) (int, error) {
	stripHopByHop(res.Header)
	shared := true // the backend's header map dies with this request
	if b.o.modifyResponse != nil {
		if err := b.modifyResponse(res); err != nil {
			res.Body.Close()
			return 0, err
		}
		shared = false // the hook may have kept res.Header
	}
	roomForTrailers(res)
	dst := w.Header()
	for k, vv := range res.Header {
		k = textproto.CanonicalMIMEHeaderKey(k)
		if have, ok := dst[k]; ok || !shared {
			dst[k] = append(have, vv...)
		} else {
			dst[k] = vv
		}
	}
	// http.Transport keeps a response's Trailer header out of its
	// Header; announce the trailers from the Trailer map.
	announced := len(res.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		dst.Add("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(res.StatusCode)
	return announced, nil
}

// roomForTrailers drops the Content-Length of a response whose trailers
// an HTTP/1.1 client is to get, so that the answer is chunked: HTTP/1.1
// carries trailers only in the chunked coding (RFC 9112 §7.1.2), and
// net/http's server does not chunk an answer that has a Content-Length,
// so the trailers were dropped. Over HTTP/2 a response may have both
// (RFC 9113 §8.1), and Go's HTTP/2 server sends a Content-Length with
// the trailers of a handler that wrote its body without flushing: from an
// HTTP/2 backend, neither announced nor unannounced trailers reached an
// HTTP/1.1 client. Trailers are expected when the response announced
// some, or, from an HTTP/2 backend, where they need no announcement (a
// gRPC server's grpc-status), when the client said "TE: trailers". The
// transfer coding is chosen hop by hop (RFC 9112 §6.1) and excludes a
// Content-Length (§6.2); the length is lost, not the body. The request
// the transport puts in res was sent to the backend with the client's
// protocol version and TE (both paths clone the client's request); an
// HTTP/2 client needs none of this, nor does an HTTP/1.0 one, which
// cannot take chunks.
func roomForTrailers(res *http.Response) {
	// The common case, an HTTP/1.1 answer without trailers, costs no
	// call: this much is inlined.
	if len(res.Trailer) > 0 || res.ProtoMajor >= 2 {
		chunkForTrailers(res)
	}
}

// chunkForTrailers is roomForTrailers for a response that may have
// trailers.
func chunkForTrailers(res *http.Response) {
	out := res.Request
	if out == nil || out.ProtoMajor != 1 || out.ProtoMinor < 1 || out.Method == http.MethodHead ||
		res.StatusCode < 200 || res.StatusCode == http.StatusNoContent || res.StatusCode == http.StatusNotModified {
		return
	}
	if len(res.Trailer) == 0 && !hasToken(out.Header["Te"], "trailers") {
		return
	}
	delete(res.Header, "Content-Length")
	res.ContentLength = -1
}

// copyTrailers sends the client the trailers of a response whose body has
// been read and closed: as announced ones if the set did not change, else
// all of them with http.TrailerPrefix.
func copyTrailers(w http.ResponseWriter, res *http.Response, announced int) {
	if len(res.Trailer) == 0 {
		return
	}
	// Flushing forces a chunked answer, so that net/http does not
	// compute a Content-Length and leave no room for trailers.
	_ = http.NewResponseController(w).Flush()
	dst := w.Header()
	prefix := ""
	if len(res.Trailer) != announced {
		prefix = http.TrailerPrefix
	}
	for k, vv := range res.Trailer {
		for _, v := range vv {
			dst.Add(prefix+k, v)
		}
	}
}

// relays reports whether r takes the relay path. An upgrade takes over the
// connection, and a periodic flush needs a timer: both are ReverseProxy's
// to do. A request that offers only h2c is no upgrade (see dropH2C).
func (b *Balancer) relays(r *http.Request) bool {
	return b.o.flushInterval <= 0 && !b.o.viaReverseProxy && !asksUpgrade(r.Header)
}

// copyBody copies the response body to the client with a pooled buffer,
// flushing after each write if flush is set.
func (b *Balancer) copyBody(w http.ResponseWriter, src io.Reader, flush bool) error {
	buf := sharedBufferPool.Get()
	defer sharedBufferPool.Put(buf)
	var rc *http.ResponseController
	if flush {
		rc = http.NewResponseController(w)
	}
	for {
		nr, rerr := src.Read(buf)
		if rerr != nil && rerr != io.EOF && rerr != context.Canceled {
			b.log.Debug("lb: reading the response body", slog.Any("error", rerr))
		}
		if nr > 0 {
			nw, werr := w.Write(buf[:nr])
			if werr != nil {
				return werr
			}
			if nw != nr {
				return io.ErrShortWrite
			}
			if rc != nil {
				_ = rc.Flush()
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// relayTrace relays the informational (1xx) responses a backend sends
// before its final answer, as ReverseProxy does, with the guard of
// [interimWriter]: hop-by-hop headers are stripped, at most max1xx are
// relayed, and 100 Continue is left to the server. Once RoundTrip has
// returned it relays nothing, because the handler owns the header map
// again.
type relayTrace struct {
	trace httptrace.ClientTrace
	w     http.ResponseWriter

	mu     sync.Mutex
	n1xx   int
	closed bool
}

func (t *relayTrace) got1xx(code int, h textproto.MIMEHeader) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || code == http.StatusContinue {
		// The server answers a client's Expect: 100-continue itself
		// when the body is first read, which the transport does once
		// the backend has sent its 100; relaying that 100 as well made
		// two, when the server's went out first.
		return nil
	}
	t.n1xx++
	if t.n1xx > max1xx {
		return nil
	}
	dst := t.w.Header()
	for k, vv := range h {
		for _, v := range vv {
			dst.Add(k, v)
		}
	}
	stripHopByHop(dst)
	t.w.WriteHeader(code)
	clear(dst) // WriteHeader does not clear the map after a 1xx
	return nil
}

func (t *relayTrace) done() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
}
