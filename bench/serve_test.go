package bench

// ServeHTTP benchmarks: the cost a Balancer adds to a request compared with
// the bare httputil.ReverseProxy a Go programmer would write, both over the
// same in-memory RoundTripper, so that no socket, no kernel and no other
// process is measured (issue 4: allocations ≤ the bare proxy's, ns/op within
// 1.1× of it).
//
//	go test -run '^$' -bench Serve -benchmem -count 5 ./bench/
//
// Names: BenchmarkServe/<workload>/<proxy>/<serial|parallel>.
//   workload  small:   GET /, 16-byte answer
//             post64k: POST / with a 64 KiB body, 16-byte answer
//   proxy     bare:    httputil.ReverseProxy{Rewrite: SetURL (atomic round robin) + SetXForwarded}
//             bare-bp: the same with a sync.Pool BufferPool (32 KiB buffers)
//             tinylb-rr, tinylb-swrr, tinylb-leastconn, tinylb-hash: lb.New(pool, strategy,
//                      lb.WithTransport(static)), defaults otherwise (retries on, 1 MiB body buffer,
//                      request buffering on: a POST body is read ahead, one more copy)
//             tinylb-rr-noretry: tinylb-rr with RetryPolicy{Tries: 1, BodyBuffer: -1}
//             tinylb-rr-nobuffer: tinylb-rr with request buffering off (RequestBuffering{Max: -1})
// BenchmarkTransport is the in-memory transport alone: its allocations are part of every
// figure above and the same for every proxy.
//
// Besides ns/op (wall time) every BenchmarkServe reports cpu-ns/op, the process's CPU time
// (all threads, the garbage collector's included) per request: on a shared machine it moves
// much less than wall time, and with RunParallel it is the CPU per request, not wall/requests.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	lb "github.com/tinylb/lb"
)

// respBody is what every backend answers: 16 bytes, as the harness's backends.
var respBody = []byte("hello from b1..\n")

var (
	hdrContentType   = []string{"text/plain; charset=utf-8"}
	hdrContentLength = []string{strconv.Itoa(len(respBody))}
)

// staticTransport answers every request at once from memory, reading the
// request body to the end first as a real transport sends it.
type staticTransport struct{}

// staticBody is a response body over respBody: one allocation.
type staticBody struct{ bytes.Reader }

func (*staticBody) Close() error { return nil }

func (staticTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_, err := io.Copy(io.Discard, req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
	}
	body := &staticBody{}
	body.Reset(respBody)
	return &http.Response{
		Status:        "200 OK",
		StatusCode:    http.StatusOK,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": hdrContentType, "Content-Length": hdrContentLength},
		Body:          body,
		ContentLength: int64(len(respBody)),
		Request:       req,
	}, nil
}

// sinkWriter is a ResponseWriter that keeps nothing but the status and the
// byte count; its header map is reused.
type sinkWriter struct {
	h    http.Header
	code int
	n    int
}

func (w *sinkWriter) Header() http.Header { return w.h }
func (w *sinkWriter) WriteHeader(c int) {
	if w.code == 0 {
		w.code = c
	}
}
func (w *sinkWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	w.n += len(p)
	return len(p), nil
}
func (w *sinkWriter) reset() { clear(w.h); w.code, w.n = 0, 0 }

// replayable is a request body that can be rewound between iterations;
// closing it does nothing.
type replayable struct{ bytes.Reader }

func (*replayable) Close() error { return nil }

var postData = bytes.Repeat([]byte("0123456789abcdef"), 64<<10/16)

// client is one goroutine's inbound request and response writer, reused
// across iterations as a server reuses its per-connection state. The
// request's context is cancelable, as a server's is.
type client struct {
	req  *http.Request
	body *replayable
	w    sinkWriter
}

func newClient(workload string, key string) *client {
	c := &client{w: sinkWriter{h: make(http.Header)}}
	r := &http.Request{
		Method:     http.MethodGet,
		URL:        &url.URL{Path: "/"},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{"User-Agent": {"wrk"}, "Accept": {"*/*"}},
		Host:       "lb.example",
		RemoteAddr: "192.0.2.10:54321",
		RequestURI: "/",
	}
	if key != "" {
		r.Header.Set("X-Key", key)
	}
	if workload == "post64k" {
		c.body = &replayable{}
		r.Method = http.MethodPost
		r.Body = c.body
		r.ContentLength = int64(len(postData))
		r.Header.Set("Content-Type", "application/octet-stream")
	}
	c.req = r.WithContext(serverCtx)
	return c
}

// do serves one request and checks the answer.
func (c *client) do(h http.Handler) bool {
	c.w.reset()
	if c.body != nil {
		c.body.Reset(postData)
	}
	h.ServeHTTP(&c.w, c.req)
	return c.w.code == http.StatusOK && c.w.n == len(respBody)
}

// serverCtx stands for a server's per-request context: cancelable (its Done
// channel is not nil, so ReverseProxy watches no CloseNotifier) and never
// canceled while the benchmarks run.
var serverCtx, _ = context.WithCancel(context.Background()) //nolint:govet // lives as long as the process

// bufPool is the BufferPool of the harness's goproxy -bufpool.
type bufPool struct{ p sync.Pool }

func (b *bufPool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bufPool) Put(x []byte) { b.p.Put(&x) }

var backendURLs = []string{"http://10.0.0.1:8080", "http://10.0.0.2:8080", "http://10.0.0.3:8080"}

// bareProxy is the floor: what a Go programmer writes with httputil.
func bareProxy(withPool bool) http.Handler {
	targets := make([]*url.URL, len(backendURLs))
	for i, s := range backendURLs {
		targets[i], _ = url.Parse(s)
	}
	var n atomic.Uint64
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(targets[(n.Add(1)-1)%uint64(len(targets))])
			pr.SetXForwarded()
		},
		Transport: staticTransport{},
	}
	if withPool {
		bp := &bufPool{}
		bp.p.New = func() any { b := make([]byte, 32<<10); return &b }
		rp.BufferPool = bp
	}
	return rp
}

// tinylb returns a balancer over three backends with s and the in-memory
// transport.
func tinylb(tb testing.TB, s lb.Strategy, opts ...lb.Option) *lb.Balancer {
	bes := make([]*lb.Backend, len(backendURLs))
	for i, u := range backendURLs {
		be, err := lb.NewBackend(u)
		if err != nil {
			tb.Fatal(err)
		}
		bes[i] = be
	}
	pool, err := lb.NewPool(bes...)
	if err != nil {
		tb.Fatal(err)
	}
	bal := lb.New(pool, s, append([]lb.Option{lb.WithTransport(staticTransport{})}, opts...)...)
	tb.Cleanup(func() { bal.Close() })
	return bal
}

// proxies lists the handlers compared, built afresh for each benchmark.
var proxies = []struct {
	name string
	make func(testing.TB) http.Handler
	keys bool // requests carry an X-Key header
}{
	{"bare", func(testing.TB) http.Handler { return bareProxy(false) }, false},
	{"bare-bp", func(testing.TB) http.Handler { return bareProxy(true) }, false},
	{"tinylb-rr", func(tb testing.TB) http.Handler { return tinylb(tb, lb.RoundRobin()) }, false},
	{"tinylb-rr-noretry", func(tb testing.TB) http.Handler {
		return tinylb(tb, lb.RoundRobin(), lb.WithRetry(lb.RetryPolicy{Tries: 1, BodyBuffer: -1}))
	}, false},
	{"tinylb-rr-nobuffer", func(tb testing.TB) http.Handler {
		return tinylb(tb, lb.RoundRobin(), lb.WithRequestBuffering(lb.RequestBuffering{Max: -1}))
	}, false},
	{"tinylb-swrr", func(tb testing.TB) http.Handler { return tinylb(tb, lb.SmoothWeighted()) }, false},
	{"tinylb-leastconn", func(tb testing.TB) http.Handler { return tinylb(tb, lb.LeastConn()) }, false},
	{"tinylb-hash", func(tb testing.TB) http.Handler { return tinylb(tb, lb.ConsistentHash(lb.HeaderKey("X-Key"))) }, true},
}

// keysPerClient is how many distinct X-Key values a client cycles through
// for the hash strategy.
const keysPerClient = 64

func clients(workload string, keys bool, seed int) []*client {
	if !keys {
		return []*client{newClient(workload, "")}
	}
	cs := make([]*client, keysPerClient)
	for i := range cs {
		cs[i] = newClient(workload, fmt.Sprintf("user-%011d", (seed*keysPerClient+i)*7919))
	}
	return cs
}

func BenchmarkServe(b *testing.B) {
	for _, workload := range []string{"small", "post64k"} {
		for _, p := range proxies {
			b.Run(workload+"/"+p.name+"/serial", func(b *testing.B) {
				h := p.make(b)
				cs := clients(workload, p.keys, 0)
				b.ReportAllocs()
				if workload == "post64k" {
					b.SetBytes(int64(len(postData)))
				}
				k := 0
				cpu0 := processCPU()
				for b.Loop() {
					if !cs[k%len(cs)].do(h) {
						b.Fatalf("bad answer: %d, %d bytes", cs[k%len(cs)].w.code, cs[k%len(cs)].w.n)
					}
					k++
				}
				reportCPU(b, cpu0)
			})
			b.Run(workload+"/"+p.name+"/parallel", func(b *testing.B) {
				h := p.make(b)
				var seed atomic.Int64
				b.ReportAllocs()
				if workload == "post64k" {
					b.SetBytes(int64(len(postData)))
				}
				cpu0 := processCPU()
				defer reportCPU(b, cpu0)
				b.RunParallel(func(pb *testing.PB) {
					cs := clients(workload, p.keys, int(seed.Add(1)))
					k := 0
					for pb.Next() {
						if !cs[k%len(cs)].do(h) {
							b.Errorf("bad answer: %d, %d bytes", cs[k%len(cs)].w.code, cs[k%len(cs)].w.n)
							return
						}
						k++
					}
				})
			})
		}
	}
}

// reportCPU reports the process's CPU time since cpu0 per operation as
// cpu-ns/op: with RunParallel it is the CPU each request costs, where ns/op
// is wall time divided by the requests of all goroutines.
func reportCPU(b *testing.B, cpu0 time.Duration) {
	if b.N > 0 {
		b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkTransport is the in-memory transport alone, given a request as
// the proxies give it (a clone of the inbound one): the part of every
// BenchmarkServe figure that is not the proxy's.
func BenchmarkTransport(b *testing.B) {
	for _, workload := range []string{"small", "post64k"} {
		b.Run(workload, func(b *testing.B) {
			c := newClient(workload, "")
			b.ReportAllocs()
			for b.Loop() {
				if c.body != nil {
					c.body.Reset(postData)
				}
				resp, err := staticTransport{}.RoundTrip(c.req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}

// TestServeAnswers checks that every proxy of the benchmarks answers 200
// with the backend's body (the benchmarks rely on it) and that the
// balancers spread requests over all three backends.
func TestServeAnswers(t *testing.T) {
	for _, workload := range []string{"small", "post64k"} {
		for _, p := range proxies {
			h := p.make(t)
			cs := clients(workload, p.keys, 0)
			for i := range 30 {
				if c := cs[i%len(cs)]; !c.do(h) {
					t.Fatalf("%s/%s: answer %d with %d bytes", workload, p.name, c.w.code, c.w.n)
				}
			}
			if bal, ok := h.(*lb.Balancer); ok {
				st := bal.Stats()
				for _, be := range st.Backends {
					if be.Requests == 0 || be.Active != 0 {
						t.Errorf("%s/%s: backend %s: %d requests, %d active", workload, p.name, be.URL, be.Requests, be.Active)
					}
				}
			}
		}
	}
}
