package lb_test

import (
	"encoding/json"
	"expvar"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tinylb/lb"
)

// TestLoadReportsValidate: impossible settings are refused with an error
// naming the field, and New panics with that message.
func TestLoadReportsValidate(t *testing.T) {
	for _, tt := range []struct {
		r    lb.LoadReports
		want string
	}{
		{lb.LoadReports{Blackout: -time.Second}, "lb: LoadReports.Blackout -1s: must not be negative"},
		{lb.LoadReports{Expiration: -1}, "LoadReports.Expiration"},
		{lb.LoadReports{UpdatePeriod: -time.Millisecond}, "LoadReports.UpdatePeriod"},
		{lb.LoadReports{PollInterval: -time.Second}, "LoadReports.PollInterval"},
		{lb.LoadReports{MeasureWindow: -time.Second}, "LoadReports.MeasureWindow"},
		{lb.LoadReports{Penalty: -1}, "LoadReports.Penalty"},
		{lb.LoadReports{Penalty: math.NaN()}, "LoadReports.Penalty NaN"},
		{lb.LoadReports{Penalty: math.Inf(1)}, "LoadReports.Penalty"},
		{lb.LoadReports{MaxFactor: 0.5}, "LoadReports.MaxFactor"},
		{lb.LoadReports{MaxFactor: math.NaN()}, "LoadReports.MaxFactor"},
		{lb.LoadReports{Header: "bad header"}, `LoadReports.Header "bad header"`},
		{lb.LoadReports{Header: "x:y"}, "LoadReports.Header"},
		{lb.LoadReports{PollPath: "load"}, `LoadReports.PollPath "load"`},
		{lb.LoadReports{PollPath: "/a b"}, "LoadReports.PollPath"},
	} {
		err := tt.r.Validate()
		require.Error(t, err, "%+v", tt.r)
		assert.Contains(t, err.Error(), tt.want)
		pool, _ := poolOf(t, "http://127.0.0.1:1")
		assert.PanicsWithValue(t, err.Error(), func() { lb.New(pool, nil, lb.WithLoadReports(tt.r)) })
	}
	for _, r := range []lb.LoadReports{
		{},
		{Header: "X-Load", StripHeader: true, PollPath: "/load?fmt=text", PollInterval: time.Second},
		{Blackout: time.Nanosecond, Penalty: 1e-9, MaxFactor: 1, Measured: true, UpdatePeriod: time.Millisecond},
	} {
		assert.NoError(t, r.Validate(), "%+v", r)
	}
}

// TestLoadReportsCloseStopsGoroutines: the weight updater and the pollers
// are the balancer's, and Close stops them.
func TestLoadReportsCloseStopsGoroutines(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	var polls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/load" {
			polls.Add(1)
		}
		w.Header().Set("Endpoint-Load-Metrics", "TEXT cpu_utilization=0.5, rps_fractional=10")
	}))
	srv2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	pool, _ := poolOf(t, srv.URL, srv2.URL)
	bal := lb.New(pool, lb.SmoothWeighted(), lb.WithLoadReports(lb.LoadReports{
		PollPath: "/load", PollInterval: 5 * time.Millisecond, UpdatePeriod: 100 * time.Millisecond,
	}))
	eventually(t, "polls", func() bool { return polls.Load() >= 3 })
	require.NoError(t, pool.Remove(srv2.URL), "a removed backend's poller stops")
	require.NoError(t, bal.Close())
	n := polls.Load()
	srv.Close()
	srv2.Close()
	goleak.VerifyNone(t, ignore)
	assert.Equal(t, n, polls.Load(), "no poll after Close")
}

// TestLoadReportsStatusPage: the status JSON has each backend's load, the
// page a Load column, and expvar the Stats fields.
func TestLoadReportsStatusPage(t *testing.T) {
	clk := newHCClock()
	a, b := reporting(t, "a", utilValue("0.2")), reporting(t, "b", utilValue("0.8"))
	pool, _ := poolOf(t, a.url, b.url)
	g := startGateway(t, pool, lb.SmoothWeighted(), lb.WithClock(clk.Now),
		lb.WithLoadReports(lb.LoadReports{Blackout: time.Second, UpdatePeriod: time.Hour}))
	shares(t, g, 2)
	clk.Advance(time.Second)
	shares(t, g, 2)
	g.bal.UpdateLoadWeights()
	site := httptest.NewServer(lb.StatusHandler(g.bal))
	t.Cleanup(site.Close)

	var st struct {
		LoadReports bool `json:"load_reports"`
		Backends    []struct {
			URL  string `json:"url"`
			Load *struct {
				Factor        float64    `json:"factor"`
				DynamicWeight float64    `json:"dynamic_weight"`
				Utilization   float64    `json:"utilization"`
				QPS           float64    `json:"qps"`
				EPS           float64    `json:"eps"`
				ReportTime    *time.Time `json:"report_time"`
			} `json:"load"`
		} `json:"backends"`
	}
	loadGetJSON(t, site.URL+"/json", &st)
	require.True(t, st.LoadReports)
	require.Len(t, st.Backends, 2)
	la := st.Backends[0].Load
	require.NotNil(t, la)
	assert.Equal(t, a.url, st.Backends[0].URL)
	assert.InDelta(t, 1.6, la.Factor, 1e-9)
	assert.InDelta(t, 500, la.DynamicWeight, 1e-6)
	assert.Equal(t, 0.2, la.Utilization)
	assert.Equal(t, 100.0, la.QPS)
	require.NotNil(t, la.ReportTime)
	assert.True(t, la.ReportTime.Equal(clk.Now()))

	page := loadGetBody(t, site.URL+"/")
	assert.Contains(t, page, `title="load factor and last load report">Load</th>`)
	assert.Contains(t, page, `data-k="load">×1.60 · util 0.20 · 100.0 rps · 0.0 eps</td>`)
	assert.Contains(t, page, `data-k="load">×0.40 · util 0.80 · 100.0 rps · 0.0 eps</td>`)

	name := "lb-load-" + t.Name()
	require.NoError(t, g.bal.PublishExpvar(name))
	v := loadExpvarJSON(t, name)
	assert.Contains(t, v, `"LoadFactor":1.6`)
	assert.Contains(t, v, `"DynamicWeight":500`)
	assert.Contains(t, v, `"LoadUtilization":0.8`)
}

// TestLoadReportsStatusPageOff: without the option the page has no Load
// column and the JSON a null load.
func TestLoadReportsStatusPageOff(t *testing.T) {
	a := reporting(t, "a", utilValue("0.2"))
	pool, _ := poolOf(t, a.url)
	g := startGateway(t, pool, lb.RoundRobin())
	g.served(t, nil)
	site := httptest.NewServer(lb.StatusHandler(g.bal))
	t.Cleanup(site.Close)
	var st struct {
		LoadReports bool `json:"load_reports"`
		Backends    []struct {
			Load *struct{} `json:"load"`
		} `json:"backends"`
	}
	loadGetJSON(t, site.URL+"/json", &st)
	assert.False(t, st.LoadReports)
	require.Len(t, st.Backends, 1)
	assert.Nil(t, st.Backends[0].Load)
	assert.NotContains(t, loadGetBody(t, site.URL+"/"), `data-k="load"`)
}

func loadGetBody(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "GET %s: %s", u, b)
	return string(b)
}

func loadGetJSON(t *testing.T, u string, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal([]byte(loadGetBody(t, u)), v))
}

func loadExpvarJSON(t *testing.T, name string) string {
	t.Helper()
	v := expvar.Get(name)
	require.NotNil(t, v)
	return v.String()
}
