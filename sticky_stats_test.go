package lb_test

import (
	"encoding/json"
	"expvar"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
)

// stickyStatus is the part of the status JSON about sticky sessions.
type stickyStatus struct {
	Sticky bool `json:"sticky"`
	Totals struct {
		StickyHits     int64 `json:"sticky_hits"`
		StickyMisses   int64 `json:"sticky_misses"`
		StickyRewrites int64 `json:"sticky_rewrites"`
	} `json:"totals"`
	Backends []struct {
		URL        string `json:"url"`
		StickyHits int64  `json:"sticky_hits"`
	} `json:"backends"`
}

func stickyPage(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return string(body)
}

// Hits, misses and rewrites reach Stats, expvar and the status page, which
// shows the sticky column and totals only when sticky cookies are on.
func TestStickyStatsAndStatus(t *testing.T) {
	r := newStickyRig(t, lb.StickyCookie{})
	cookies := cookiesByBackend(t, r.g, "tinylb", 3)
	for range 5 {
		r.g.stickyGet(t, "tinylb", cookies["b"])
	}
	r.g.stickyGet(t, "tinylb", cookies["c"])
	r.g.stickyGet(t, "tinylb", "forged")
	require.NoError(t, r.pool.SetMaintenance(r.ups[0].url, true))
	r.g.stickyGet(t, "tinylb", cookies["a"])

	st := r.g.bal.Stats()
	assert.Equal(t, []int64{0, 5, 1}, []int64{st.Backends[0].StickyHits, st.Backends[1].StickyHits, st.Backends[2].StickyHits})
	assert.Equal(t, int64(6), st.StickyHits)
	assert.Equal(t, int64(2), st.StickyMisses)
	assert.Equal(t, int64(2), st.StickyRewrites)

	require.NoError(t, r.g.bal.PublishExpvar("sticky-test-stats"))
	var ev struct {
		StickyMisses int64
		Backends     []struct{ StickyHits int64 }
	}
	require.NoError(t, json.Unmarshal([]byte(expvar.Get("sticky-test-stats").String()), &ev))
	assert.Equal(t, int64(2), ev.StickyMisses)
	assert.Equal(t, int64(5), ev.Backends[1].StickyHits)

	srv := httptest.NewServer(lb.StatusHandler(r.g.bal))
	t.Cleanup(srv.Close)
	var js stickyStatus
	require.NoError(t, json.Unmarshal([]byte(stickyPage(t, srv.URL+"/?format=json")), &js))
	assert.True(t, js.Sticky)
	assert.Equal(t, int64(6), js.Totals.StickyHits)
	assert.Equal(t, int64(2), js.Totals.StickyMisses)
	assert.Equal(t, int64(2), js.Totals.StickyRewrites)
	require.Len(t, js.Backends, 3)
	assert.Equal(t, int64(5), js.Backends[1].StickyHits)

	page := stickyPage(t, srv.URL+"/")
	assert.Contains(t, page, `<span class="val" id="t-sticky-hits">6</span>`)
	assert.Contains(t, page, `<span class="val" id="t-sticky-misses">2</span>`)
	assert.Contains(t, page, `<span class="val" id="t-sticky-rewrites">2</span>`)
	assert.Contains(t, page, `>Sticky</th>`)
	assert.Contains(t, page, `<td class="num" data-k="sticky">5</td>`)
	assert.Equal(t, 3+1, strings.Count(page, `data-k="sticky"`), "a sticky cell per row and in the row template")

	// Without sticky cookies: no column, no totals, and the counters stay 0.
	pool2, _ := poolOf(t, urlsOf(r.ups...)...)
	plain := startGateway(t, pool2, nil)
	plain.served(t, http.Header{"Cookie": {"tinylb=" + cookies["b"]}})
	srv2 := httptest.NewServer(lb.StatusHandler(plain.bal))
	t.Cleanup(srv2.Close)
	page = stickyPage(t, srv2.URL+"/")
	assert.NotContains(t, page, `id="t-sticky`)
	assert.NotContains(t, page, `data-k="sticky"`)
	assert.NotContains(t, page, ">Sticky</th>")
	js = stickyStatus{}
	require.NoError(t, json.Unmarshal([]byte(stickyPage(t, srv2.URL+"/?format=json")), &js))
	assert.False(t, js.Sticky)
	pst := plain.bal.Stats()
	assert.Zero(t, pst.StickyHits+pst.StickyMisses+pst.StickyRewrites)
}
