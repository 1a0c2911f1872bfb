package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// statusLoads fetches the status report of r and returns whether it has
// load_reports on, and each backend's load factor (0 while it has none).
func statusLoads(t *testing.T, r *running) (bool, map[string]float64) {
	t.Helper()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	_, body := statusDo(t, noRedirects(tr), http.MethodGet, "http://"+r.p.StatusAddr().String()+"/json", nil, nil)
	var rep struct {
		LoadReports bool `json:"load_reports"`
		Backends    []struct {
			URL  string `json:"url"`
			Load *struct {
				Factor        float64 `json:"factor"`
				DynamicWeight float64 `json:"dynamic_weight"`
			} `json:"load"`
		} `json:"backends"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &rep), body)
	loads := make(map[string]float64)
	for _, be := range rep.Backends {
		if be.Load != nil {
			loads[be.URL] = be.Load.Factor
		}
	}
	return rep.LoadReports, loads
}

// With measured load reports the proxy weighs the backends by what it
// measures: the slow one ends with the smaller factor. The status page
// shows the loads.
func TestLoadReportsMeasured(t *testing.T) {
	fast, slow := backend(t, "fast", 0), backend(t, "slow", 20*time.Millisecond)
	path := writeConfig(t, fmt.Sprintf(`{
		"strategy": "swrr",
		"backends": [{"url": %q}, {"url": %q}],
		"load_reports": {"measured": true, "measure_window": "2s", "update_period": "100ms", "blackout": "1ns", "penalty": 1, "max_factor": 4},
		"status": {"listen": "127.0.0.1:0"}
	}`, fast.URL, slow.URL))
	r := start(t, "-config", path)
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()

	var loads map[string]float64
	var on bool
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		spread(t, client, r.url, 10)
		on, loads = statusLoads(t, r)
		if len(loads) == 2 && loads[fast.URL] > loads[slow.URL] {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	assert.True(t, on, "status report without load_reports: true")
	require.Len(t, loads, 2, "backends with a load factor: %v", loads)
	assert.Greater(t, loads[fast.URL], loads[slow.URL], "the slow backend weighs as much as the fast one")

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	_, page := statusDo(t, noRedirects(tr), http.MethodGet, "http://"+r.p.StatusAddr().String()+"/", nil, nil)
	assert.Contains(t, page, `data-k="load"`)
}

// Reports in a header of the backends' answers give them a load, and
// strip_header keeps the header from the clients.
func TestLoadReportsHeader(t *testing.T) {
	reporting := func(name, util string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Load", "TEXT cpu_utilization="+util+", rps_fractional=100.0, eps=0")
			io.WriteString(w, name)
		}))
		t.Cleanup(s.Close)
		return s
	}
	idle, busy := reporting("idle", "0.2"), reporting("busy", "0.8")
	path := writeConfig(t, fmt.Sprintf(`{
		"strategy": "swrr",
		"backends": [{"url": %q}, {"url": %q}],
		"load_reports": {"header": "X-Load", "strip_header": true, "update_period": "100ms", "blackout": "1ns"},
		"status": {"listen": "127.0.0.1:0"}
	}`, idle.URL, busy.URL))
	r := start(t, "-config", path)
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()

	resp, err := client.Get(r.url)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Empty(t, resp.Header.Get("X-Load"), "strip_header: the report reached the client")

	var loads map[string]float64
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		spread(t, client, r.url, 4)
		if _, loads = statusLoads(t, r); len(loads) == 2 && loads[idle.URL] > loads[busy.URL] {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	require.Len(t, loads, 2, "backends with a load factor: %v", loads)
	assert.Greater(t, loads[idle.URL], loads[busy.URL], "the busy backend weighs as much as the idle one")
}

func TestLoadReportsErrors(t *testing.T) {
	const be = `"backends": [{"url": "http://127.0.0.1:9001"}]`
	for _, tt := range []struct{ lr, want string }{
		{`{"poll_interval": "-1s"}`, `load_reports.poll_interval: "-1s": must not be negative (0 is the default)`},
		{`{"measure_window": "-5s"}`, `load_reports.measure_window: "-5s": must not be negative (0 is the default)`},
		{`{"penalty": -0.5}`, `load_reports.penalty: -0.5: must not be negative (0 is the default, 1)`},
		{`{"max_factor": 0.5}`, `load_reports.max_factor: 0.5: must be a finite number of at least 1 (0 is the default, 10)`},
		{`{"header": "bad header"}`, `load_reports: lb: LoadReports.Header "bad header": not a header name`},
		{`{"poll_path": "load"}`, `load_reports: lb: LoadReports.PollPath "load": must be a path starting with /`},
		{`{"measured": "yes"}`, `load_reports.measured`},
	} {
		path := writeConfig(t, fmt.Sprintf(`{%s, "load_reports": %s}`, be, tt.lr))
		_, err := load([]string{"-config", path})
		if assert.Error(t, err, tt.lr) {
			assert.True(t, strings.HasPrefix(err.Error(), path+": "+tt.want), "load_reports %s: error %q, want %q", tt.lr, err, tt.want)
		}
	}
}
