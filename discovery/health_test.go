package discovery_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
)

// The balancer's active health check covers the backends a watcher adds:
// an unhealthy one takes no request until its check passes.
func TestWatchAddedBackendsAreHealthChecked(t *testing.T) {
	a, b := newServer(t, "a"), newServer(t, "b")
	b.healthy.Store(false)
	pool := &lb.Pool{}
	check := &health.HTTPCheck{Interval: 20 * time.Millisecond, Timeout: 20 * time.Millisecond, Rise: 1, Fall: 1, StartDown: true}
	bal, fr := front(t, pool, lb.RoundRobin(), lb.WithHealthCheck(check), lb.WithPassiveHealth(health.Passive{MaxFails: -1}))
	src := newFeed()
	w := watch(t, src, pool)
	src.send(t, targets(a.URL), nil)
	require.NoError(t, w.WaitReady(context.Background()))
	waitFor(t, "a up", func() bool { return stateOf(bal, a.URL) == lb.StateUp })

	src.send(t, targets(a.URL, b.URL), nil)
	waitFor(t, "b checked and down", func() bool {
		for _, st := range bal.Stats().Backends {
			if st.URL == b.URL {
				return st.State == lb.StateDown && !st.LastCheck.IsZero()
			}
		}
		return false
	})
	hc := client(t)
	for range 4 {
		_, body := get(t, hc, fr.URL)
		assert.Equal(t, "a", body)
	}
	assert.Zero(t, b.hits.Load())

	b.healthy.Store(true)
	waitFor(t, "b up", func() bool { return stateOf(bal, b.URL) == lb.StateUp })
	seen := map[string]int{}
	for range 4 {
		_, body := get(t, hc, fr.URL)
		seen[body]++
	}
	assert.Equal(t, map[string]int{"a": 2, "b": 2}, seen)
}
