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

// applyTo is the smallest loop from a source to a pool: each good set
// becomes the pool's membership through Pool.Update, and the URLs of each
// applied set are sent on applied. Errors keep the last set.
func applyTo(t *testing.T, pool *lb.Pool, applied chan<- []string) func([]discovery.Target, error) {
	return func(set []discovery.Target, err error) {
		if err != nil {
			return
		}
		var bs []*lb.Backend
		for _, tg := range set {
			var opts []lb.BackendOption
			if tg.Weight > 0 {
				opts = append(opts, lb.WithWeight(tg.Weight))
			}
			if tg.Backup {
				opts = append(opts, lb.AsBackup())
			}
			b, err := lb.NewBackend(tg.URL, opts...)
			if !assert.NoError(t, err, "the source pushed a target the pool rejects") {
				return
			}
			bs = append(bs, b)
		}
		if assert.NoError(t, pool.Update(bs...)) {
			applied <- urls(set)
		}
	}
}

// TestEndToEnd: etcd keys → the source → Pool.Update → a Balancer in front
// of httptest backends: requests reach the backends etcd lists, and follow
// the list when it changes.
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

	applied := make(chan []string, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- etcd.New(c, "/svc/web/").Run(ctx, applyTo(t, pool, applied)) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})

	waitApplied(t, applied, backends[0], backends[1])
	assert.Equal(t, []string{"a", "b"}, servedBy(t, front, 6))

	put(t, c, "/svc/web/c", backends[2])
	del(t, c, "/svc/web/a")
	waitApplied(t, applied, backends[1], backends[2])
	assert.Equal(t, []string{"b", "c"}, servedBy(t, front, 6))

	// c becomes a backup: b alone takes the requests.
	put(t, c, "/svc/web/c", `{"url": "`+backends[2]+`", "backup": true}`)
	waitApplied(t, applied, backends[1], backends[2])
	assert.Equal(t, []string{"b"}, servedBy(t, front, 6))
}

// waitApplied waits until the pool was given the set want.
func waitApplied(t *testing.T, applied <-chan []string, want ...string) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case got := <-applied:
			if equalStrings(got, want) {
				return
			}
		case <-timeout:
			t.Fatalf("the pool was not given %v in 20 s", want)
		}
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
