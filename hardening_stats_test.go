package lb_test

import (
	"encoding/json"
	"expvar"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
)

// TestStatsAfterClose: a closed balancer keeps reporting the pool's
// members, in state closed, with their counters; the status page keeps its
// rows. (Close used to publish an empty snapshot: Stats listed 0 backends
// and the page an empty table.)
func TestStatsAfterClose(t *testing.T) {
	a, b := startUpstream(t, "a", nil), startUpstream(t, "b", nil)
	pool, err := lb.NewPool(backendFor(t, a.url, lb.WithWeight(3)), backendFor(t, b.url))
	require.NoError(t, err)
	g := startGateway(t, pool, lb.SmoothWeighted())
	for range 8 {
		g.served(t, nil)
	}
	before := g.bal.Stats()
	require.Len(t, before.Backends, 2)
	require.NoError(t, g.bal.Close())

	st := g.bal.Stats()
	require.Len(t, st.Backends, 2, "Stats after Close")
	for i, bs := range st.Backends {
		was := before.Backends[i]
		assert.Equal(t, was.URL, bs.URL, "backend %d", i)
		assert.Equal(t, was.Weight, bs.Weight, "%s: Weight", bs.URL)
		assert.Equal(t, lb.StateClosed, bs.State, "%s: State", bs.URL)
		assert.Equal(t, "balancer closed", bs.Reason, "%s: Reason", bs.URL)
		assert.Zero(t, bs.EffectiveWeight, "%s: EffectiveWeight of a closed balancer", bs.URL)
		assert.Equal(t, was.Requests, bs.Requests, "%s: Requests", bs.URL)
		assert.Equal(t, was.LatencyHistogram, bs.LatencyHistogram, "%s: LatencyHistogram", bs.URL)
	}
	assert.Equal(t, int64(8), st.Requests, "total Requests after Close")
	assert.Equal(t, "closed", lb.StateClosed.String())

	// The page and its JSON keep the rows.
	page := httptest.NewServer(lb.StatusHandler(g.bal))
	t.Cleanup(page.Close)
	var rep struct {
		Totals   struct{ Backends, Serving int }
		Backends []struct{ URL, State string }
	}
	getJSON(t, page.URL+"/json", &rep)
	assert.Equal(t, 2, rep.Totals.Backends, "totals.backends")
	assert.Equal(t, 0, rep.Totals.Serving, "totals.serving")
	require.Len(t, rep.Backends, 2)
	for i, want := range []string{a.url, b.url} {
		assert.Equal(t, want, rep.Backends[i].URL)
		assert.Equal(t, "closed", rep.Backends[i].State)
	}
	html := getBody(t, page.URL+"/")
	for _, u := range []string{a.url, b.url} {
		assert.Contains(t, html, `<tr data-backend="`+u+`">`, "page row of %s", u)
	}
	assert.Contains(t, html, `class="state st-closed">closed<`, "page state cell")

	// Membership is read live: a member removed after Close leaves the list.
	require.NoError(t, pool.Remove(b.url))
	st = g.bal.Stats()
	require.Len(t, st.Backends, 1, "Stats after Close and Remove")
	assert.Equal(t, a.url, st.Backends[0].URL)
}

// TestPublishExpvarBadName: an empty name is refused with an error, and
// publishes nothing; a name taken, even by many callers at once, is an
// error for all but one, never a panic.
func TestPublishExpvarBadName(t *testing.T) {
	pool, _ := poolOf(t, startUpstream(t, "a", nil).url)
	bal := lb.New(pool, nil)
	t.Cleanup(func() { bal.Close() })

	err := bal.PublishExpvar("")
	require.Error(t, err, `PublishExpvar("")`)
	assert.Contains(t, err.Error(), "lb: ")
	assert.Contains(t, err.Error(), "empty")
	assert.Nil(t, expvar.Get(""), `PublishExpvar("") published a variable`)

	name := fmt.Sprintf("tinylb_test_race_%d", expvarRuns.Add(1))
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		mu    sync.Mutex
		ok    int
		taken []error
	)
	for range 16 {
		wg.Go(func() {
			<-start
			err := bal.PublishExpvar(name)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				ok++
			} else {
				taken = append(taken, err)
			}
		})
	}
	close(start)
	wg.Wait()
	assert.Equal(t, 1, ok, "calls that published %q", name)
	require.Len(t, taken, 15)
	for _, err := range taken {
		assert.Contains(t, err.Error(), "already published")
	}
}

// getJSON decodes the JSON answer of a GET of u into v.
func getJSON(t testing.TB, u string, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal([]byte(getBody(t, u)), v), "GET %s", u)
}

// getBody returns the body of a GET of u, failing the test unless it is
// answered 200.
func getBody(t testing.TB, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	require.NoError(t, err, "GET %s", u)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err, "GET %s: body", u)
	require.Equal(t, http.StatusOK, resp.StatusCode, "GET %s: %s", u, strings.TrimSpace(string(body)))
	return string(body)
}
