package reliability

import (
	"context"
	"errors"
	"net/url"
	"time"

	"fmt"
	"github.com/tinylb/lb/health"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/tinylb/lb"
)

// memTransport is an in-memory RoundTripper for scenarios that run on
// synctest's fake clock (no sockets): each backend host answers with a
// function, or fails like a refused connection while down.
type memTransport struct {
	mu    sync.Mutex
	down  map[string]bool
	hits  map[string]int
	reply func(host string, r *http.Request) (int, string)
}

func newMem() *memTransport {
	return &memTransport{down: make(map[string]bool), hits: make(map[string]int)}
}

func (m *memTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	host := r.URL.Host
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	m.mu.Lock()
	down := m.down[host]
	if !down {
		m.hits[host]++
	}
	reply := m.reply
	m.mu.Unlock()
	if down {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	status, body := http.StatusOK, host
	if reply != nil {
		status, body = reply(host, r)
	}
	return &http.Response{
		StatusCode:    status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"X-Backend": {host}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       r,
	}, nil
}

func (m *memTransport) setDown(host string, down bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.down[host] = down
}

func (m *memTransport) isDown(host string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.down[host]
}

// take returns and clears the per-host hit counts.
func (m *memTransport) take() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.hits
	m.hits = make(map[string]int)
	return h
}

// memHosts are the hosts of in-memory backends.
func memHosts(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("10.99.0.%d:80", i+1))
	}
	return out
}

// memPool makes a pool of in-memory backends; they are never dialed.
func memPool(t testing.TB, hosts []string, opts ...lb.BackendOption) *lb.Pool {
	t.Helper()
	var bs []*lb.Backend
	for _, h := range hosts {
		b, err := lb.NewBackend("http://"+h, opts...)
		if err != nil {
			t.Fatal(err)
		}
		bs = append(bs, b)
	}
	p, err := lb.NewPool(bs...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// serve sends one GET through h in memory and returns the status and the
// backend that answered.
func serve(h http.Handler, path string) (int, string) {
	rec := httptest.NewRecorder()
	req := httptest.NewRequestWithContext(context.Background(), "GET", "http://lb.example"+path, nil)
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Header().Get("X-Backend")
}

// fakeCheck is a health.Checker for synctest scenarios: it fails while
// fail says so, and counts its checks.
type fakeCheck struct {
	sched health.Schedule
	fail  func(host string) bool

	mu     sync.Mutex
	checks map[string][]time.Time
	active map[string]int // checks running now, per host
	maxPar int            // most checks of one host at once
}

func (c *fakeCheck) Schedule() health.Schedule { return c.sched }

func (c *fakeCheck) Check(ctx context.Context, target *url.URL) error {
	c.mu.Lock()
	if c.checks == nil {
		c.checks = make(map[string][]time.Time)
		c.active = make(map[string]int)
	}
	c.checks[target.Host] = append(c.checks[target.Host], time.Now())
	c.active[target.Host]++
	c.maxPar = max(c.maxPar, c.active[target.Host])
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.active[target.Host]--
		c.mu.Unlock()
	}()
	if c.fail(target.Host) {
		return errors.New("fake check failed")
	}
	return nil
}
