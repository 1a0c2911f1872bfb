package lb_test

import (
	"net/http"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
)

// A retry status must be one worth sending elsewhere: a server error or
// 429. Anything else is the request's own answer; retrying 200 would send
// every successful GET again (nginx's proxy_next_upstream accepts only
// http_500..http_504, http_429 and http_403/404, the latter two being
// opt-ins for a misrouted request; we keep to the server-error side).
func TestRetryPolicyStatusesOnlyServerErrors(t *testing.T) {
	for _, s := range []int{429, 500, 502, 503, 504, 599} {
		assert.NoErrorf(t, lb.RetryPolicy{Statuses: []int{s}}.Validate(), "status %d", s)
	}
	for _, s := range []int{0, 100, 101, 200, 204, 302, 400, 404, 428, 430, 499, 600, 999, -1} {
		err := lb.RetryPolicy{Statuses: []int{503, s}}.Validate()
		require.Errorf(t, err, "status %d must be refused", s)
		assert.Contains(t, err.Error(), strconv.Itoa(s), "the error names the value")
	}
	pool, _ := poolOf(t, "http://127.0.0.1:1")
	assert.PanicsWithValue(t,
		"lb: RetryPolicy.Statuses: 200 is not a status to retry (want 5xx or 429)",
		func() { lb.New(pool, nil, lb.WithRetry(lb.RetryPolicy{Statuses: []int{200}})) })
}

// 429 from a busy backend is retried on another one.
func TestRetryOn429(t *testing.T) {
	busy := startUpstream(t, "busy", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTooManyRequests)
	})
	idle := startUpstream(t, "idle", nil)
	pool, _ := poolOf(t, busy.url, idle.url)
	gw := startGateway(t, pool, lb.RoundRobin(),
		lb.WithRetry(lb.RetryPolicy{Statuses: []int{http.StatusTooManyRequests}}))
	for i := range 4 {
		id := "r" + strconv.Itoa(i)
		out := gw.mustDo(t, http.MethodGet, "/", id, nil, nil)
		require.Equal(t, http.StatusOK, out.status)
		assert.Equal(t, 1, idle.hits(id))
	}
	assert.Positive(t, busy.count(), "the busy backend was tried")
}
