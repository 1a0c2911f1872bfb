package lb_test

import (
	"bytes"
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
)

// The sticky benchmarks and allocation test serve ServeHTTP with an
// in-memory transport and a response writer that keeps nothing, so that
// only the balancer's own work is measured (as in package bench):
//
//	go test -run '^$' -bench StickyServe -benchmem .

var memBody = []byte("hello from b1..\n")

// memTransport answers every request from memory.
type memTransport struct{}

type memBodyReader struct{ bytes.Reader }

func (*memBodyReader) Close() error { return nil }

func (memTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	body := &memBodyReader{}
	body.Reset(memBody)
	return &http.Response{
		StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"text/plain"}, "Content-Length": {"16"}},
		Body:          body,
		ContentLength: int64(len(memBody)),
		Request:       req,
	}, nil
}

// sink is a ResponseWriter that keeps the status and its header map, which
// is reused.
type sink struct {
	h    http.Header
	code int
}

func (w *sink) Header() http.Header         { return w.h }
func (w *sink) WriteHeader(c int)           { w.code = c }
func (w *sink) Write(p []byte) (int, error) { return len(p), nil }

// stickyBenchCase is a balancer and the request a benchmark sends it.
type stickyBenchCase struct {
	name   string
	sticky bool
	cookie func(id string) string // the request's Cookie header; "" for none
}

var stickyBenchCases = []stickyBenchCase{
	{"off", false, func(string) string { return "" }},
	{"off-with-cookie", false, func(id string) string { return "tinylb=" + id }},
	{"on-no-cookie", true, func(string) string { return "" }},
	{"on-hit", true, func(id string) string { return "tinylb=" + id }},
	{"on-hit-first-of-others", true, func(id string) string { return "tinylb=" + id + "; session=abc; theme=dark" }},
	{"on-hit-amid-others", true, func(id string) string { return "session=abc; tinylb=" + id + "; theme=dark" }},
	{"on-forged", true, func(string) string { return "tinylb=AAAAAAAAAAAAAAAAAAAAAA" }},
}

// stickyBench builds tc's balancer over two backends that are never
// dialled, and a request to send it (with the cookie of the second
// backend).
func stickyBench(tb testing.TB, tc stickyBenchCase) (*lb.Balancer, *http.Request, *sink) {
	tb.Helper()
	a, err := lb.NewBackend("http://127.0.0.1:9")
	require.NoError(tb, err)
	b, err := lb.NewBackend("http://127.0.0.1:10")
	require.NoError(tb, err)
	pool, err := lb.NewPool(a, b)
	require.NoError(tb, err)
	opts := []lb.Option{lb.WithTransport(memTransport{})}
	if tc.sticky {
		opts = append(opts, lb.WithStickyCookie(lb.StickyCookie{Secret: stickySecret}))
	}
	bal := lb.New(pool, lb.RoundRobin(), opts...)
	tb.Cleanup(func() { bal.Close() })

	// The cookie of b, as the balancer sets it.
	id := "none"
	if tc.sticky {
		w := &sink{h: http.Header{}}
		for range 2 {
			clear(w.h)
			bal.ServeHTTP(w, newBenchRequest(tb, ""))
			if c, err := http.ParseSetCookie(w.h.Get("Set-Cookie")); err == nil && w.h.Get("Content-Length") == "16" {
				id = c.Value // the last one: round robin's second pick, b
			}
		}
	}
	return bal, newBenchRequest(tb, tc.cookie(id)), &sink{h: http.Header{}}
}

func newBenchRequest(tb testing.TB, cookie string) *http.Request {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://front.test/", nil)
	require.NoError(tb, err)
	req.RemoteAddr = "127.0.0.1:5000"
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	return req
}

func BenchmarkStickyServe(b *testing.B) {
	for _, tc := range stickyBenchCases {
		b.Run(tc.name, func(b *testing.B) {
			bal, req, w := stickyBench(b, tc)
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				bal.ServeHTTP(w, req)
				if w.code != http.StatusOK {
					b.Fatalf("status %d", w.code)
				}
			}
		})
	}
}

// Sticky cookies cost no allocation when a request's cookie is right (and
// none when they are off: the benchmark's "off" matches main's); setting
// a cookie costs one, and so does taking the cookie out from between
// others (not when it comes first or last).
func TestStickyAllocs(t *testing.T) {
	allocs := map[string]float64{}
	for _, tc := range stickyBenchCases {
		bal, req, w := stickyBench(t, tc)
		allocs[tc.name] = testing.AllocsPerRun(200, func() {
			clear(w.h)
			bal.ServeHTTP(w, req)
		})
		require.Equal(t, http.StatusOK, w.code, tc.name)
	}
	t.Logf("allocations per request: %v", allocs)
	// A request with one more header costs its clone one more allocation,
	// sticky or not: requests with a cookie compare with off-with-cookie.
	off, offCookie := allocs["off"], allocs["off-with-cookie"]
	assert.Equal(t, offCookie, allocs["on-hit"], "a right cookie costs allocations")
	assert.Equal(t, offCookie, allocs["on-hit-first-of-others"])
	assert.Equal(t, offCookie+1, allocs["on-hit-amid-others"])
	assert.Equal(t, off+1, allocs["on-no-cookie"], "setting the cookie costs more than one allocation")
	assert.Equal(t, offCookie+1, allocs["on-forged"])
}
