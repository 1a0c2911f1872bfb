package lb_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
)

// reqIDHeader carries the test's id of a request, so that backends can count
// how many times each request reached them.
const reqIDHeader = "X-Req-Id"

// seenReq is what a test backend recorded of one request.
type seenReq struct {
	id      string
	method  string
	uri     string // RequestURI as received
	host    string // Host as received
	header  http.Header
	bodyLen int
	bodySum [32]byte
	bodyErr error
}

// upstream is an httptest server on 127.0.0.1 that records every request
// reaching it (reading its whole body first) before handing it to its
// handler. Its default handler answers "<name>|<request id>".
type upstream struct {
	name string
	srv  *httptest.Server
	url  string

	total atomic.Int64
	mu    sync.Mutex
	reqs  []seenReq
}

// startUpstream starts a backend named name; h may be nil for the default
// answer, config functions adjust its server before it starts. The request body h sees is the body the recorder read.
func startUpstream(t testing.TB, name string, h http.HandlerFunc, config ...func(*http.Server)) *upstream {
	t.Helper()
	b := &upstream{name: name}
	b.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		b.mu.Lock()
		b.reqs = append(b.reqs, seenReq{
			id: r.Header.Get(reqIDHeader), method: r.Method, uri: r.RequestURI, host: r.Host,
			header: r.Header.Clone(), bodyLen: len(body), bodySum: sha256.Sum256(body), bodyErr: err,
		})
		b.mu.Unlock()
		b.total.Add(1)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if h == nil {
			answerName(w, r, name)
			return
		}
		h(w, r)
	}))
	for _, f := range config {
		f(b.srv.Config)
	}
	b.srv.Start()
	b.url = b.srv.URL
	t.Cleanup(b.srv.Close)
	return b
}

// answerName is the default answer of a backend called name.
func answerName(w http.ResponseWriter, r *http.Request, name string) {
	w.Header().Set("X-Backend", name)
	fmt.Fprintf(w, "%s|%s", name, r.Header.Get(reqIDHeader))
}

// hits returns how many requests with the given id reached b.
func (b *upstream) hits(id string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, s := range b.reqs {
		if s.id == id {
			n++
		}
	}
	return n
}

// get returns the record of the request with the given id; it fails the
// test unless exactly one such request reached b.
func (b *upstream) get(t testing.TB, id string) seenReq {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var found []seenReq
	for _, s := range b.reqs {
		if s.id == id {
			found = append(found, s)
		}
	}
	require.Lenf(t, found, 1, "backend %s saw request %q %d times; want 1", b.name, id, len(found))
	return found[0]
}

func (b *upstream) count() int { return int(b.total.Load()) }

// backendFor is lb.NewBackend that fails the test on error.
func backendFor(t testing.TB, rawURL string, opts ...lb.BackendOption) *lb.Backend {
	t.Helper()
	be, err := lb.NewBackend(rawURL, opts...)
	require.NoErrorf(t, err, "NewBackend(%q)", rawURL)
	return be
}

// poolOf makes a pool of one Backend per URL.
func poolOf(t testing.TB, urls ...string) (*lb.Pool, []*lb.Backend) {
	t.Helper()
	bes := make([]*lb.Backend, len(urls))
	for i, u := range urls {
		bes[i] = backendFor(t, u)
	}
	p, err := lb.NewPool(bes...)
	require.NoError(t, err, "NewPool")
	return p, bes
}

// urlsOf returns the URLs of backends.
func urlsOf(bs ...*upstream) []string {
	u := make([]string, len(bs))
	for i, b := range bs {
		u[i] = b.url
	}
	return u
}

// gateway is a balancer served by an httptest server, with a client of its
// own.
type gateway struct {
	bal *lb.Balancer
	srv *httptest.Server
	url string
	c   *http.Client
}

// serveGateway serves bal (or h wrapping it, if not nil). Cleanups close, in
// order, the server, the balancer and the client's idle connections.
func serveGateway(t testing.TB, bal *lb.Balancer, h http.Handler) *gateway {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	t.Cleanup(func() { require.NoError(t, bal.Close(), "Close") })
	if h == nil {
		h = bal
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &gateway{bal: bal, srv: srv, url: srv.URL, c: &http.Client{Transport: tr}}
}

// startGateway makes a balancer over pool and serves it.
func startGateway(t testing.TB, pool *lb.Pool, s lb.Strategy, opts ...lb.Option) *gateway {
	t.Helper()
	return serveGateway(t, lb.New(pool, s, opts...), nil)
}

// outcome is the outcome of one request through a front.
type outcome struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request; it is safe to call from any goroutine.
func (f *gateway) do(ctx context.Context, method, path, id string, body []byte, hdr http.Header) (outcome, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, f.url+path, rd)
	if err != nil {
		return outcome{}, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if id != "" {
		req.Header.Set(reqIDHeader, id)
	}
	resp, err := f.c.Do(req)
	if err != nil {
		return outcome{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return outcome{}, err
	}
	return outcome{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// mustDo is do on the test goroutine, failing the test on a transport error.
func (f *gateway) mustDo(t testing.TB, method, path, id string, body []byte, hdr http.Header) outcome {
	t.Helper()
	r, err := f.do(context.Background(), method, path, id, body, hdr)
	require.NoErrorf(t, err, "%s %s", method, path)
	return r
}

// served sends a GET and returns the name of the backend that answered
// with the default answerName, failing the test on anything but a 200.
func (f *gateway) served(t testing.TB, hdr http.Header) string {
	t.Helper()
	r := f.mustDo(t, http.MethodGet, "/", "", nil, hdr)
	require.Equalf(t, http.StatusOK, r.status, "GET: body %q", r.body)
	name, _, _ := strings.Cut(string(r.body), "|")
	return name
}

// sequence makes n sequential GETs and returns the names of the backends
// that served them, space separated.
func (f *gateway) sequence(t testing.TB, n int) string {
	t.Helper()
	names := make([]string, n)
	for i := range names {
		names[i] = f.served(t, nil)
	}
	return strings.Join(names, " ")
}

// eventually polls cond until it holds, failing the test after 5 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// await waits for a value on ch, failing the test after 5 s.
func await[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// pseudoRandom returns n pseudo-random bytes determined by seed.
func pseudoRandom(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// hostPortOf is the host:port of a backend URL, for checking that error
// answers do not reveal it.
func hostPortOf(u string) string {
	return strings.TrimPrefix(strings.TrimPrefix(u, "http://"), "https://")
}

// errRecorder is an ErrorHandler that records the errors it is given and
// answers like the default handler.
type errRecorder struct {
	mu   sync.Mutex
	errs []error
}

func (c *errRecorder) handle(w http.ResponseWriter, r *http.Request, err error) {
	c.mu.Lock()
	c.errs = append(c.errs, err)
	c.mu.Unlock()
	status := http.StatusBadGateway
	if errors.Is(err, lb.ErrNoHealthyBackend) || errors.Is(err, lb.ErrClosed) {
		status = http.StatusServiceUnavailable
	}
	http.Error(w, http.StatusText(status), status)
}

func (c *errRecorder) all() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]error(nil), c.errs...)
}

// last returns the one error recorded, failing the test unless there is
// exactly one.
func (c *errRecorder) only(t testing.TB) error {
	t.Helper()
	errs := c.all()
	require.Lenf(t, errs, 1, "ErrorHandler calls: %v", errs)
	return errs[0]
}

// send sends req through g and returns the answer.
func (g *gateway) send(t *testing.T, req *http.Request) outcome {
	t.Helper()
	resp, err := g.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return outcome{status: resp.StatusCode, header: resp.Header, body: b}
}
