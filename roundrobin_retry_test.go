package lb_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
)

// TestRoundRobinDeadBackendGetsItsShareOfFirstAttempts: with passive
// health off, a backend that refuses every connection stays in rotation;
// under round robin it must get its fair share of first attempts, half of
// them in a pool of two, and not more. The retry of each of its requests
// used to advance the shared round-robin counter, so that in a pool of a
// dead and a live backend the dead one took every first attempt.
func TestRoundRobinDeadBackendGetsItsShareOfFirstAttempts(t *testing.T) {
	t.Parallel()
	for _, deadFirst := range []bool{true, false} {
		name := "dead second"
		if deadFirst {
			name = "dead first"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			live := startUpstream(t, "live", nil)
			urls := []string{refusingURL(t), live.url}
			if !deadFirst {
				urls[0], urls[1] = urls[1], urls[0]
			}
			pool, _ := poolOf(t, urls...)
			g := startGateway(t, pool, lb.RoundRobin(), lb.WithPassiveHealth(health.Passive{MaxFails: -1}))
			const n = 60
			for range n {
				r := g.mustDo(t, http.MethodGet, "/", "", nil, nil)
				require.Equal(t, http.StatusOK, r.status, "body %q", r.body)
			}
			st := g.bal.Stats()
			require.Len(t, st.Backends, 2)
			first := map[string]int64{}
			for _, bs := range st.Backends {
				first[bs.URL] = bs.Requests - bs.Retries
				assert.Equal(t, lb.StateUp, bs.State, "%s: passive health is off", bs.URL)
			}
			dead, alive := st.Backends[0], st.Backends[1]
			if !deadFirst {
				dead, alive = alive, dead
			}
			assert.Equal(t, int64(n/2), first[dead.URL], "first attempts on the dead backend")
			assert.Equal(t, int64(n/2), first[alive.URL], "first attempts on the live backend")
			assert.Equal(t, int64(n/2), dead.Failures, "every attempt on the dead backend fails")
			assert.Equal(t, int64(n/2), alive.Retries, "each of its requests is retried on the live one")
			assert.Equal(t, n, live.count(), "the live backend served every request")
		})
	}
}
