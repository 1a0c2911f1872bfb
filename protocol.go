package lb

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
)

// BackendProtocol says which HTTP version the balancer speaks to its
// backends, request by request. See [WithBackendProtocol].
type BackendProtocol int

const (
	// BackendHTTP1, the default, sends every request through the
	// transport as it is: HTTP/1.1 with the default one ([NewTransport]),
	// whatever a transport of [WithTransport] speaks otherwise.
	BackendHTTP1 BackendProtocol = iota
	// BackendHTTP2ForGRPC sends gRPC requests over HTTP/2 and every other
	// request over HTTP/1.1: for backends that speak both on one port (a
	// Go http.Server with Protocols HTTP1 and UnencryptedHTTP2, Envoy,
	// a gRPC server behind cmux), so that one balancer serves gRPC, which
	// needs HTTP/2, and WebSocket and plain requests, which stay on
	// HTTP/1.1 as before. A gRPC request is one whose Content-Type is
	// application/grpc, alone or with a "+" subtype (+proto, +json) or
	// parameters; gRPC-Web (application/grpc-web...) is made to cross
	// HTTP/1.1 and stays there.
	BackendHTTP2ForGRPC
	// BackendHTTP2 sends every request over HTTP/2 but protocol upgrades
	// (WebSocket), which HTTP/2 does not have and which go over HTTP/1.1:
	// for backends declared to speak HTTP/2 (a gRPC server, or any h2c
	// server). Upgrades need a backend that speaks HTTP/1.1 too.
	BackendHTTP2
)

// String returns the protocol's Go name without the package.
func (p BackendProtocol) String() string {
	switch p {
	case BackendHTTP1:
		return "BackendHTTP1"
	case BackendHTTP2ForGRPC:
		return "BackendHTTP2ForGRPC"
	case BackendHTTP2:
		return "BackendHTTP2"
	}
	return fmt.Sprintf("BackendProtocol(%d)", int(p))
}

// WithBackendProtocol sets which requests go to backends over HTTP/2:
// none ([BackendHTTP1], the default), gRPC requests
// ([BackendHTTP2ForGRPC]) or all but upgrades ([BackendHTTP2]). HTTP/2
// is h2c with prior knowledge (RFC 9113 §3.3) to http:// backends and h2
// negotiated by TLS ALPN to https:// ones; a backend that does not speak
// it fails those requests.
//
//	bal := lb.New(pool, lb.RoundRobin(), lb.WithBackendProtocol(lb.BackendHTTP2ForGRPC))
//
// It is one setting for the balancer, as Caddy's transport "versions" and
// Envoy's per-cluster HTTP protocol options are, not a URL scheme: a
// backend's URL, its [Backend.Key] and so its consistent-hash ring points
// stay what they are, and health checks are not affected.
//
// The requests chosen for HTTP/1.1 go through the transport (the default
// one, or the *http.Transport given with [WithTransport], unchanged); the
// others go through a copy of it made by New ([http.Transport.Clone]: the
// same dialer, TLS config, timeouts and HTTP2 settings) whose Protocols
// are HTTP/2 only. [Balancer.Close] closes the copy's idle connections.
// Changes made to the transport after New do not reach the copy. A
// RoundTripper of another type cannot be copied: it then carries every
// request, and chooses the protocol itself; New logs a warning.
//
// The transport's ResponseHeaderTimeout (30 s in NewTransport's) applies
// to HTTP/2 requests too. It counts from the end of the request body, so
// a bidi stream the client keeps open is never cut by it, but a
// server-streaming call is, if its server sends no headers until its
// first message (grpc-go sends them lazily) and that takes longer: raise
// the timeout, or set it to 0, in a transport of your own for such calls.
//
// An invalid value makes New panic.
func WithBackendProtocol(p BackendProtocol) Option {
	return optionFunc(func(o *options) { o.backendProto = p })
}

// validate reports a value that is not one of the constants.
func (p BackendProtocol) validate() error {
	if p < BackendHTTP1 || p > BackendHTTP2 {
		return fmt.Errorf("lb: WithBackendProtocol(%d): not a BackendProtocol", int(p))
	}
	return nil
}

// wantsHTTP2 reports whether a request with header h goes over HTTP/2
// under p. An upgrade never does: HTTP/2 has no Upgrade (RFC 9113 §8.6),
// Go's HTTP/2 transport refuses the header, and carrying a WebSocket over
// HTTP/2 takes an extended CONNECT (RFC 8441), into which the balancer
// does not translate an HTTP/1.1 handshake.
func (p BackendProtocol) wantsHTTP2(h http.Header) bool {
	if hasToken(h["Connection"], "upgrade") {
		return false
	}
	return p == BackendHTTP2 || p == BackendHTTP2ForGRPC && isGRPCContent(h)
}

// isGRPCContent reports whether h's Content-Type is gRPC's: "application/grpc",
// alone or followed by "+" (a message subtype) or ";" (parameters), as
// gRPC's PROTOCOL-HTTP2.md defines it and grpc-go's server checks it.
// "application/grpc-web" and its variants are not gRPC over HTTP/2.
func isGRPCContent(h http.Header) bool {
	v := h["Content-Type"]
	if len(v) == 0 {
		return false
	}
	const grpc = "application/grpc"
	ct := v[0]
	if len(ct) < len(grpc) || !asciiEqualFold(ct[:len(grpc)], grpc) {
		return false
	}
	return len(ct) == len(grpc) || ct[len(grpc)] == '+' || ct[len(grpc)] == ';'
}

// backendTransport is the RoundTripper under the retry loop. It sends each
// attempt over h1 or h2 as the BackendProtocol says, and ends the request
// side of an exchange the backend has ended (see roundTripStream).
type backendTransport struct {
	h1    http.RoundTripper
	h2    http.RoundTripper // nil: every request goes through h1
	proto BackendProtocol
}

// newBackendTransport builds the balancer's backendTransport over base,
// with an HTTP/2 copy of base when the protocol asks for one.
func (b *Balancer) newBackendTransport(base http.RoundTripper) *backendTransport {
	bt := &backendTransport{h1: base, proto: b.o.backendProto}
	if bt.proto == BackendHTTP1 {
		return bt
	}
	tr, ok := base.(*http.Transport)
	if !ok {
		b.log.Warn("lb: WithBackendProtocol needs an *http.Transport to copy; every request goes through the transport given",
			slog.String("protocol", bt.proto.String()), slog.String("transport", fmt.Sprintf("%T", base)))
		return bt
	}
	h2 := http2Copy(tr)
	bt.h2, b.ownH2 = h2, h2
	return bt
}

func (t *backendTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rt := t.h1
	if t.h2 != nil && t.proto.wantsHTTP2(req.Header) {
		rt = t.h2
	}
	// Only a body of unknown length can be a stream the client keeps
	// open; a fixed-length one ends by itself, and sparing it the
	// exchange's own context saves four allocations per upload.
	if rr, ok := req.Body.(*replayReader); ok && req.ContentLength < 0 && !rr.rb.complete() && !hasToken(req.Header["Connection"], "upgrade") {
		return roundTripStream(rt, req)
	}
	return rt.RoundTrip(req)
}

// roundTripStream sends a request whose body may still be coming from the
// client (a stream: a gRPC call, a chunked upload) with a context of its
// own, which ends as soon as the response does: when its body reaches EOF
// or is closed.
//
// The HTTP/2 transport's response body Close waits until the request body
// has been written out (golang/go#48908), or until the request's context
// ends. A stream the backend ends first (a gRPC server that returns its
// status before the client half-closes, an error on a bidi call) has a
// request body the client keeps open, so Close waited until the client
// gave up: the response's end and trailers never reached it. Ending the
// context once the response is over lets Close return at once (golang/go
// #49366 makes that no error), and the transport resets the stream, which
// the backend has finished with anyway. The client's own request and its
// context are untouched, so the attempt's accounting does not see a
// cancellation, and the HTTP/1.1 transport, which has put its connection
// back by the time a body returns EOF, is not affected.
func roundTripStream(rt http.RoundTripper, req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	res, err := rt.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	res.Body = &streamBody{rc: res.Body, cancel: cancel}
	return res, nil
}

// streamBody is the response body of roundTripStream.
type streamBody struct {
	rc     io.ReadCloser
	cancel context.CancelFunc
}

func (b *streamBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err == io.EOF {
		// The trailers are in the response by now.
		b.cancel()
	}
	return n, err
}

// Close ends the exchange's context before the transport's Close, which
// would otherwise wait for the request body.
func (b *streamBody) Close() error {
	b.cancel()
	return b.rc.Close()
}
