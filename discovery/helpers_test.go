package discovery_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/discovery"
)

// server is a test backend on 127.0.0.1 that answers its name. Its health
// check (/healthz) answers 200 while healthy, 503 otherwise; a request to
// /slow blocks until release is closed.
type server struct {
	*httptest.Server
	name    string
	healthy atomic.Bool
	hits    atomic.Int64
	started chan struct{} // receives when a /slow request arrives
	release chan struct{}
	once    sync.Once
}

// unblock lets the /slow requests finish.
func (s *server) unblock() { s.once.Do(func() { close(s.release) }) }

func newServer(t *testing.T, name string) *server {
	t.Helper()
	s := &server{name: name, started: make(chan struct{}, 16), release: make(chan struct{})}
	s.healthy.Store(true)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			if !s.healthy.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			return
		case "/slow":
			s.started <- struct{}{}
			<-s.release
		}
		s.hits.Add(1)
		io.WriteString(w, name)
	}))
	t.Cleanup(func() {
		s.unblock()
		s.Close()
	})
	return s
}

// push is one call of a source's push.
type push struct {
	set []discovery.Target
	err error
}

// feed is a Source that pushes what the test sends it, in order.
type feed struct {
	ch   chan push
	runs atomic.Int64 // Run calls that have not returned
}

func newFeed() *feed { return &feed{ch: make(chan push)} }

func (f *feed) Run(ctx context.Context, p func([]discovery.Target, error)) error {
	f.runs.Add(1)
	defer f.runs.Add(-1)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case x := <-f.ch:
			p(x.set, x.err)
		}
	}
}

// send hands the watcher a set (or an error) and returns once the source
// has pushed it.
func (f *feed) send(t *testing.T, set []discovery.Target, err error) {
	t.Helper()
	select {
	case f.ch <- push{set, err}:
	case <-time.After(10 * time.Second):
		t.Fatal("the source's Run is not running")
	}
}

func targets(urls ...string) []discovery.Target {
	out := make([]discovery.Target, len(urls))
	for i, u := range urls {
		out[i] = discovery.Target{URL: u}
	}
	return out
}

// watch starts a watcher over pool; the test's cleanup closes it.
func watch(t *testing.T, src discovery.Source, pool *lb.Pool, opts ...discovery.Option) *discovery.Watcher {
	t.Helper()
	w := discovery.Watch(context.Background(), src, pool, opts...)
	t.Cleanup(func() { w.Close() })
	return w
}

// front starts a balancer over pool behind an httptest server on
// 127.0.0.1; the test's cleanup stops both.
func front(t *testing.T, pool *lb.Pool, s lb.Strategy, opts ...lb.Option) (*lb.Balancer, *httptest.Server) {
	t.Helper()
	tr := lb.NewTransport()
	bal := lb.New(pool, s, append([]lb.Option{lb.WithTransport(tr)}, opts...)...)
	srv := httptest.NewServer(bal)
	t.Cleanup(func() {
		srv.Close()
		bal.Close()
		tr.CloseIdleConnections()
	})
	return bal, srv
}

// get sends a GET and returns the status and the body.
func get(t *testing.T, c *http.Client, url string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// client returns an HTTP client whose idle connections the test's cleanup
// closes.
func client(t *testing.T) *http.Client {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// members returns the keys of the pool's backends, in order.
func members(pool *lb.Pool) []string {
	var out []string
	for _, b := range pool.Backends() {
		out = append(out, b.Key())
	}
	return out
}

// waitFor polls cond until it holds, or fails the test after 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// eventLog collects a watcher's events.
type eventLog struct {
	mu  sync.Mutex
	evs []discovery.Event
}

func (l *eventLog) add(ev discovery.Event) {
	l.mu.Lock()
	l.evs = append(l.evs, ev)
	l.mu.Unlock()
}

func (l *eventLog) of(k discovery.EventKind) []discovery.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []discovery.Event
	for _, ev := range l.evs {
		if ev.Kind == k {
			out = append(out, ev)
		}
	}
	return out
}

// logBuffer is a slog handler's output, safe for concurrent writes.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func errorIs(err, target error) bool { return errors.Is(err, target) }
