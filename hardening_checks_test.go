package lb_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
)

// TestHealthChecksAsValuesAndPointers: HTTPCheck and TCPCheck both work
// as values and as pointers in WithHealthCheck, with their own Schedule
// (HTTPCheck used to work only as a pointer, TCPCheck as either).
func TestHealthChecksAsValuesAndPointers(t *testing.T) {
	sched := func(c health.Checker) health.Schedule { return c.(health.Scheduler).Schedule() }
	checks := []struct {
		name string
		c    health.Checker
		bad  health.Checker // the same with Rise -1
	}{
		{"HTTPCheck value", health.HTTPCheck{Interval: time.Hour, StartDown: true}, health.HTTPCheck{Rise: -1}},
		{"HTTPCheck pointer", &health.HTTPCheck{Interval: time.Hour, StartDown: true}, &health.HTTPCheck{Rise: -1}},
		{"TCPCheck value", health.TCPCheck{Interval: time.Hour, StartDown: true}, health.TCPCheck{Rise: -1}},
		{"TCPCheck pointer", &health.TCPCheck{Interval: time.Hour, StartDown: true}, &health.TCPCheck{Rise: -1}},
	}
	for _, tc := range checks {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, health.Schedule{Interval: time.Hour, StartDown: true}, sched(tc.c))

			// New sees the Schedule and its Validate in both forms.
			pool, _ := poolOf(t, startUpstream(t, "x", nil).url)
			require.PanicsWithValue(t, "health: negative Rise -1", func() {
				lb.New(pool, nil, lb.WithHealthCheck(tc.bad))
			}, "New with an invalid schedule")

			live := startUpstream(t, "live", nil)
			dead := refusingURL(t)
			pool, _ = poolOf(t, live.url, dead)
			g := startGateway(t, pool, lb.RoundRobin(), lb.WithHealthCheck(tc.c))
			stats := func() map[string]lb.BackendStats {
				m := map[string]lb.BackendStats{}
				for _, bs := range g.bal.Stats().Backends {
					m[bs.URL] = bs
				}
				return m
			}
			eventually(t, "a first check of both backends", func() bool {
				m := stats()
				return !m[live.url].LastCheck.IsZero() && !m[dead].LastCheck.IsZero()
			})
			m := stats()
			assert.Equal(t, lb.StateUp, m[live.url].State, "live backend: %s", m[live.url].Reason)
			assert.Empty(t, m[live.url].LastCheckError, "live backend")
			assert.Equal(t, lb.StateDown, m[dead].State, "dead backend")
			assert.NotEmpty(t, m[dead].LastCheckError, "dead backend")
			for range 4 {
				assert.Equal(t, "live", g.served(t, nil))
			}
		})
	}
}

// TestHTTPCheckValueKeepsStartDown: an HTTPCheck given as a value brings
// its StartDown along: the backend is down until its first check passes,
// and that first check is the one the test lets through.
func TestHTTPCheckValueKeepsStartDown(t *testing.T) {
	release := make(chan struct{})
	checked := make(chan struct{}, 1)
	be := startUpstream(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			select {
			case checked <- struct{}{}:
			default:
			}
			<-release
		}
		answerName(w, r, "a")
	})
	pool, _ := poolOf(t, be.url)
	bal := lb.New(pool, nil, lb.WithHealthCheck(health.HTTPCheck{Interval: time.Hour, Timeout: time.Minute, StartDown: true}))
	t.Cleanup(func() { bal.Close() })
	t.Cleanup(func() { close(release) }) // before Close: its check returns

	await(t, checked, "the first check")
	bs := bal.Stats().Backends[0]
	assert.Equal(t, lb.StateDown, bs.State, "while the first check runs")
	assert.Equal(t, "waiting for its first health check", bs.Reason)

	release <- struct{}{} // not the close: the check goes on as one
	eventually(t, "the backend up", func() bool { return bal.Stats().Backends[0].State == lb.StateUp })
	assert.Equal(t, fmt.Sprintf("health check passed (%d in a row)", 1), bal.Stats().Backends[0].Reason)
}
