package etcd_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tinylb/lb"
	"github.com/tinylb/lb/discovery"
	"github.com/tinylb/lb/discovery/etcd"
)

// TestEndToEnd: etcd keys → the source → discovery.Watch → a Balancer in
// front of httptest backends: requests reach the backends etcd lists, and
// follow the list when it changes.
func TestEndToEnd(t *testing.T) {
	var backends []string
	for _, name := range []string{"a", "b", "c"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, name)
		}))
		t.Cleanup(srv.Close)
		backends = append(backends, srv.URL)
	}
	s := startServer(t)
	c := newClient(t, s.endpoint())
	put(t, c, "/svc/web/a", backends[0])
	put(t, c, "/svc/web/b", `{"url": "`+backends[1]+`", "weight": 1}`)
	put(t, c, "/svc/web/bad", "not a URL")

	pool, err := lb.NewPool()
	require.NoError(t, err)
	bal := lb.New(pool, lb.RoundRobin())
	t.Cleanup(func() { _ = bal.Close() })
	front := httptest.NewServer(bal)
	t.Cleanup(front.Close)

	w := discovery.Watch(context.Background(), etcd.New(c, "/svc/web/"), pool)
	t.Cleanup(func() { require.NoError(t, w.Close()) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, w.WaitReady(ctx))
	assert.Equal(t, sorted(backends[0], backends[1]), poolKeys(pool), "the first set is in when WaitReady returns")
	assert.Equal(t, []string{"a", "b"}, servedBy(t, front, 6))

	put(t, c, "/svc/web/c", backends[2])
	del(t, c, "/svc/web/a")
	waitPool(t, "a gone, c in", pool, func() bool { return equalStrings(poolKeys(pool), sorted(backends[1], backends[2])) })
	assert.Equal(t, []string{"b", "c"}, servedBy(t, front, 6))

	// c becomes a backup: b alone takes the requests.
	put(t, c, "/svc/web/c", `{"url": "`+backends[2]+`", "backup": true}`)
	waitPool(t, "c a backup", pool, func() bool {
		b, ok := pool.Get(backends[2])
		return ok && b.Backup()
	})
	assert.Equal(t, []string{"b"}, servedBy(t, front, 6))
	st := w.Stats()
	assert.Zero(t, st.Errors, "last error: %v", st.LastError)
}

// poolKeys returns the keys of the pool's backends, sorted.
func poolKeys(pool *lb.Pool) []string {
	var out []string
	for _, b := range pool.Backends() {
		out = append(out, b.Key())
	}
	sort.Strings(out)
	return out
}

func sorted(s ...string) []string {
	sort.Strings(s)
	return s
}

// waitPool waits until cond holds; what and the pool's keys say what
// failed.
func waitPool(t *testing.T, what string, pool *lb.Pool, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 20 s waiting for %s; pool: %v", what, poolKeys(pool))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func equalStrings(a, b []string) bool {
	return strings.Join(a, "\n") == strings.Join(b, "\n")
}

// servedBy sends n requests through front and returns the names of the
// backends that answered, sorted and without repeats.
func servedBy(t *testing.T, front *httptest.Server, n int) []string {
	t.Helper()
	seen := map[string]bool{}
	for range n {
		resp, err := front.Client().Get(front.URL + "/")
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, resp.Body.Close())
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, "body %q", body)
		seen[string(body)] = true
	}
	var out []string
	for name := range seen {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}
