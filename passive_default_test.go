package lb_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
)

// deadAndLive returns a pool of a backend that refuses connections and a
// live one, and the stats lookup by URL.
func deadAndLive(t *testing.T) (pool *lb.Pool, dead, live string, up *upstream) {
	t.Helper()
	up = startUpstream(t, "live", nil)
	pool, bes := poolOf(t, refusingURL(t), up.url)
	return pool, bes[0].Key(), bes[1].Key(), up
}

// backendStats returns the stats of the backend with key url.
func backendStats(t *testing.T, bal *lb.Balancer, url string) lb.BackendStats {
	t.Helper()
	for _, bs := range bal.Stats().Backends {
		if bs.URL == url {
			return bs
		}
	}
	require.FailNow(t, "no stats for "+url)
	return lb.BackendStats{}
}

// getOK makes n GETs through g, each of which must succeed.
func getOK(t *testing.T, g *gateway, n int) {
	t.Helper()
	for range n {
		r := g.mustDo(t, http.MethodGet, "/", "", nil, nil)
		require.Equal(t, http.StatusOK, r.status, "body %q", r.body)
	}
}

// TestPassiveHealthOnByDefault: with no options, a backend that refuses
// connections is taken out after its first failure, as nginx's defaults
// (max_fails=1 fail_timeout=10s) do, and gets no attempt until 10s have
// passed. It used to stay up forever, every request it was picked for
// paying a failed attempt (attempts=20 failures=20 state=up).
func TestPassiveHealthOnByDefault(t *testing.T) {
	t.Parallel()
	t.Run("no options", func(t *testing.T) {
		t.Parallel()
		pool, dead, live, up := deadAndLive(t)
		g := serveGateway(t, lb.New(pool, nil), nil)
		const n = 20
		getOK(t, g, n)
		ds := backendStats(t, g.bal, dead)
		assert.Equal(t, lb.StateEjected, ds.State, "dead backend after its failure (reason %q)", ds.Reason)
		assert.Equal(t, int64(1), ds.Requests, "attempts on the dead backend")
		assert.Equal(t, int64(1), ds.Failures, "failures of the dead backend")
		assert.Equal(t, lb.StateUp, backendStats(t, g.bal, live).State, "live backend")
		assert.Equal(t, n, up.count(), "the live backend served every request")
	})
	t.Run("out for 10s", func(t *testing.T) {
		t.Parallel()
		pool, dead, _, up := deadAndLive(t)
		clk := newHCClock()
		g := serveGateway(t, lb.New(pool, nil, lb.WithClock(clk.Now)), nil)
		getOK(t, g, 4)
		require.Equal(t, int64(1), backendStats(t, g.bal, dead).Requests, "attempts on the dead backend")
		clk.Advance(10*time.Second - time.Millisecond)
		getOK(t, g, 10)
		ds := backendStats(t, g.bal, dead)
		assert.Equal(t, lb.StateEjected, ds.State, "dead backend just before 10s")
		assert.Equal(t, int64(1), ds.Requests, "attempts on the dead backend within 10s")

		// At 10s the ejection is over: one probe request tries the
		// backend again, fails, and takes it out for another 10s.
		clk.Advance(time.Millisecond)
		getOK(t, g, 10)
		ds = backendStats(t, g.bal, dead)
		assert.Equal(t, int64(2), ds.Requests, "attempts on the dead backend: one probe after 10s")
		assert.Equal(t, lb.StateEjected, ds.State, "dead backend after its probe failed")
		assert.Equal(t, 24, up.count(), "the live backend served every request")
	})
	t.Run("MaxFails -1 turns it off", func(t *testing.T) {
		t.Parallel()
		pool, dead, _, up := deadAndLive(t)
		g := serveGateway(t, lb.New(pool, nil, lb.WithPassiveHealth(health.Passive{MaxFails: -1})), nil)
		const n = 20
		getOK(t, g, n)
		ds := backendStats(t, g.bal, dead)
		assert.Equal(t, lb.StateUp, ds.State, "dead backend with passive health off")
		assert.Equal(t, int64(n/2), ds.Requests, "attempts on the dead backend: its round-robin share")
		assert.Equal(t, int64(n/2), ds.Failures, "failures of the dead backend")
		assert.Equal(t, n, up.count(), "the live backend served every request")
	})
	t.Run("nil observer is the default", func(t *testing.T) {
		t.Parallel()
		pool, dead, _, _ := deadAndLive(t)
		g := serveGateway(t, lb.New(pool, nil, lb.WithPassiveHealth(nil)), nil)
		getOK(t, g, 6)
		ds := backendStats(t, g.bal, dead)
		assert.Equal(t, lb.StateEjected, ds.State, "dead backend after its failure")
		assert.Equal(t, int64(1), ds.Requests, "attempts on the dead backend")
	})
}
