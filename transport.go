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
