package lb

import (
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"time"
)

// NewTransport returns a new transport with the balancer's defaults:
// HTTP/1.1 keep-alive connections sized for a proxy (256 idle per backend;
// Go's default of 2 makes a busy proxy open and close connections all the
// time), a 5 s dial timeout, a 30 s wait for response headers, no gzip of
// its own and no proxy from the environment, so that requests go to the
// pool's addresses and nowhere else. Change a field and pass it with
// [WithTransport]; the caller then closes its idle connections. The
// requests [WithBackendProtocol] sends over HTTP/2 go through a copy of
// it that the balancer makes and closes.
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

// http2Copy returns a copy of t that speaks HTTP/2 only, for
// [WithBackendProtocol]: h2c with prior knowledge (RFC 9113 §3.3) to
// http:// backends and h2 by TLS ALPN to https:// ones. An http.Transport
// uses h2c only when its Protocols leave HTTP/1 out, so one transport
// cannot choose per request; Clone keeps every other setting of t (the
// dialer, the TLS config, the timeouts, its HTTP2 config), so that
// NewTransport's settings, or the caller's, apply to both protocols.
// TLSNextProto is left for net/http to fill: a map cloned from t would
// hand TLS connections to t's own HTTP/2 pool and has no entry for h2c.
// Caddy's "versions h2c" sets the same Protocols on its transport
// (modules/caddyhttp/reverseproxy/httptransport.go), for every request.
func http2Copy(t *http.Transport) *http.Transport {
	h2 := t.Clone()
	h2.TLSNextProto = nil
	p := new(http.Protocols)
	p.SetHTTP2(true)
	p.SetUnencryptedHTTP2(true)
	h2.Protocols = p
	return h2
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
