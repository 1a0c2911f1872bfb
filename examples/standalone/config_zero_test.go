package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
)

// These tests hold the standalone's settings to the library's vocabulary:
// a setting of the file or a flag has the name of the library's field,
// and 0 (or leaving it out) means what 0 means in the library, its
// default, with -1 for off where the library has an off.

// passiveRun starts a proxy over a live backend and a dead one with the
// given health.passive object, and sends requests until the dead backend
// has had three attempts. It returns the dead backend's stats.
func passiveRun(t *testing.T, passive string) lb.BackendStats {
	t.Helper()
	live, dead := backend(t, "live", 0), deadURL(t)
	path := writeConfig(t, fmt.Sprintf(`{"backends": [{"url": %q}, {"url": %q}], "health": {"passive": %s}}`,
		dead, live.URL, passive))
	r := start(t, "-config", path)
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	for i := 0; i < 20 && backendStats(t, r.p.bal, dead).Requests < 3; i++ {
		status, body := get(t, client, http.MethodGet, r.url)
		require.Equal(t, http.StatusOK, status, "GET %d: %s", i, body) // retried on the live one
	}
	return backendStats(t, r.p.bal, dead)
}

func TestPassiveMaxFailsZeroIsTheDefault(t *testing.T) {
	// "max_fails": 0 is health.Passive{MaxFails: 0}: one failure takes
	// the backend out, as it does with max_fails left out. (An hour's
	// fail_timeout keeps it out for the rest of the test.)
	for _, passive := range []string{`{"max_fails": 0, "fail_timeout": "1h"}`, `{"fail_timeout": "1h"}`} {
		st := passiveRun(t, passive)
		assert.Equal(t, lb.StateEjected, st.State, "passive %s: dead backend %+v", passive, st)
		assert.EqualValues(t, 1, st.Requests, "passive %s: attempts on the dead backend", passive)
	}

	// Zeros and nothing at all are the zero health.Passive, whose
	// defaults are max_fails 1 and fail_timeout 10s.
	for _, passive := range []string{`{"max_fails": 0, "fail_timeout": "0s"}`, `{}`} {
		path := writeConfig(t, `{"backends": [{"url": "http://127.0.0.1:9001"}], "health": {"passive": `+passive+`}}`)
		c, err := load([]string{"-config", path})
		require.NoError(t, err, "passive %s", passive)
		assert.Equal(t, health.Passive{}, c.Health.Passive.passive(), "passive %s", passive)
	}
}

func TestPassiveMaxFailsMinusOneIsOff(t *testing.T) {
	st := passiveRun(t, `{"max_fails": -1}`)
	assert.Equal(t, lb.StateUp, st.State, "dead backend %+v", st)
	assert.EqualValues(t, 3, st.Requests, "attempts on the dead backend")

	_, err := load([]string{"-backend", "http://127.0.0.1:9001", "-passive-max-fails", "-1"})
	require.NoError(t, err)
	_, err = load([]string{"-backend", "http://127.0.0.1:9001", "-passive-max-fails", "-2"})
	require.EqualError(t, err, "-passive-max-fails: -2: must be -1 (off), 0 (the default, 1) or more")
	_, err = load([]string{"-backend", "http://127.0.0.1:9001", "-passive-max-fails", "-1", "-passive-fail-timeout", "5s"})
	require.EqualError(t, err, "-passive-fail-timeout has no effect with -passive-max-fails -1")
}

// bodyBufferRun starts a proxy over a backend that answers 502 and one
// that answers 200, retrying 502s, and sends four PUTs with a body. It
// returns their statuses.
func bodyBufferRun(t *testing.T, retries string) []int {
	t.Helper()
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusBadGateway)
	}))
	t.Cleanup(bad.Close)
	good := backend(t, "good", 0)
	path := writeConfig(t, fmt.Sprintf(`{"backends": [{"url": %q}, {"url": %q}], "retries": %s}`, bad.URL, good.URL, retries))
	r := start(t, "-config", path)
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	var statuses []int
	for range 4 {
		status, _ := get(t, client, http.MethodPut, r.url)
		statuses = append(statuses, status)
	}
	return statuses
}

func TestBodyBufferZeroIsTheDefault(t *testing.T) {
	// 0 is the library's default, 1 MiB: the small bodies are kept, so
	// the PUTs that got a 502 are sent again to the other backend.
	ok := []int{200, 200, 200, 200}
	assert.Equal(t, ok, bodyBufferRun(t, `{"statuses": [502], "body_buffer": 0}`))
	assert.Equal(t, ok, bodyBufferRun(t, `{"statuses": [502]}`))
}

func TestBodyBufferMinusOneKeepsNothing(t *testing.T) {
	// Nothing is kept, so a PUT sent to the 502 backend cannot be sent
	// again: round robin sends two of the four there.
	got := bodyBufferRun(t, `{"statuses": [502], "body_buffer": -1}`)
	assert.ElementsMatch(t, []int{200, 200, 502, 502}, got)

	path := writeConfig(t, `{"backends": [{"url": "http://127.0.0.1:9001"}], "retries": {"body_buffer": -2}}`)
	_, err := load([]string{"-config", path})
	require.EqualError(t, err, path+`: retries.body_buffer: -2: must be -1 (keep nothing), 0 (the default, 1 MiB) or more`)
}

func TestTriesZeroIsTheDefault(t *testing.T) {
	path := writeConfig(t, `{"backends": [{"url": "http://127.0.0.1:9001"}], "retries": {"tries": 0}}`)
	c, err := load([]string{"-config", path})
	require.NoError(t, err)
	assert.Equal(t, lb.RetryPolicy{}, c.Retries.policy(), "tries 0 and nothing else is the zero RetryPolicy")

	path = writeConfig(t, `{"backends": [{"url": "http://127.0.0.1:9001"}], "retries": {"tries": -1}}`)
	_, err = load([]string{"-config", path})
	require.EqualError(t, err, path+`: retries.tries: -1: must not be negative (0 is the default, 3; 1 turns retries off)`)
}

// -tries counts tries, as lb.RetryPolicy.Tries and the file's
// retries.tries do; -retries, which counted retries, is refused with a
// pointer to -tries.
func TestTriesFlag(t *testing.T) {
	const be = "http://127.0.0.1:9001"
	for _, tt := range []struct {
		args  []string
		tries int
	}{
		{[]string{"-tries", "1"}, 1},
		{[]string{"-tries", "5"}, 5},
		{[]string{"-tries=0"}, 0},
	} {
		c, err := load(append(tt.args, "-backend", be))
		require.NoError(t, err, "%q", tt.args)
		assert.Equal(t, tt.tries, c.Retries.Tries, "%q", tt.args)
	}

	path := writeConfig(t, `{"backends": [{"url": "http://127.0.0.1:9001"}], "retries": {"tries": 4}}`)
	c, err := load([]string{"-config", path})
	require.NoError(t, err)
	assert.Equal(t, 4, c.Retries.Tries, "a -tries left out does not override the file")
	c, err = load([]string{"-config", path, "-tries", "2"})
	require.NoError(t, err)
	assert.Equal(t, 2, c.Retries.Tries)

	_, err = load([]string{"-tries", "-1", "-backend", be})
	require.EqualError(t, err, "-tries: -1: must not be negative (0 is the default, 3; 1 turns retries off)")

	_, err = load([]string{"-retries", "2", "-backend", be})
	require.EqualError(t, err, "-retries: no such flag: use -tries, which counts the first attempt too (-retries 2 is -tries 3)")
	_, err = load([]string{"-backend", be, "-retries=x"})
	require.EqualError(t, err, "-retries: no such flag: use -tries, which counts the first attempt too (-tries 1 turns retries off)")

	var help strings.Builder
	usage(&help)
	assert.Contains(t, help.String(), "-tries")
	assert.NotContains(t, help.String(), "-retries")
}

// The retry statuses are judged by lb.RetryPolicy.Validate, entry by
// entry: only 5xx statuses and 429.
func TestRetryStatusesAsTheLibrary(t *testing.T) {
	for _, ok := range []string{`[502, 503, 504]`, `[429]`, `[500, 599]`} {
		path := writeConfig(t, `{"backends": [{"url": "http://127.0.0.1:9001"}], "retries": {"statuses": `+ok+`}}`)
		_, err := load([]string{"-config", path})
		assert.NoError(t, err, "statuses %s", ok)
	}
	for _, tt := range []struct{ statuses, want string }{
		{`[502, 404]`, `retries.statuses[1]: 404 is not a status to retry (want 5xx or 429)`},
		{`[200]`, `retries.statuses[0]: 200 is not a status to retry (want 5xx or 429)`},
		{`[502, 503, 600]`, `retries.statuses[2]: 600 is not a status to retry (want 5xx or 429)`},
	} {
		path := writeConfig(t, `{"backends": [{"url": "http://127.0.0.1:9001"}], "retries": {"statuses": `+tt.statuses+`}}`)
		_, err := load([]string{"-config", path})
		assert.EqualError(t, err, path+": "+tt.want, "statuses %s", tt.statuses)
	}
}

// An active check's zero fields are health.HTTPCheck's defaults.
func TestActiveCheckZeroIsTheDefault(t *testing.T) {
	path := writeConfig(t, `{"backends": [{"url": "http://127.0.0.1:9001"}], "health": {"active": {
		"path": "", "interval": "0s", "timeout": "0s", "rise": 0, "fall": 0, "status_min": 0, "status_max": 0}}}`)
	c, err := load([]string{"-config", path})
	require.NoError(t, err)
	require.NotNil(t, c.Health.Active)
	assert.Equal(t, &health.HTTPCheck{}, c.Health.Active.check())

	c, err = load([]string{"-health-path", "/ping", "-backend", "http://127.0.0.1:9001"})
	require.NoError(t, err)
	assert.Equal(t, &health.HTTPCheck{Path: "/ping"}, c.Health.Active.check(), "-health-path sets only the path")

	for _, tt := range []struct{ active, want string }{
		{`{"rise": -1}`, `health.active.rise: -1: must not be negative (0 is the default, 2)`},
		{`{"interval": "-1s"}`, `health.active.interval: "-1s": must not be negative (0 is the default, 5s)`},
		{`{"status_min": 400}`, `health.active: health: StatusMin 400 above StatusMax 399`},
	} {
		path := writeConfig(t, `{"backends": [{"url": "http://127.0.0.1:9001"}], "health": {"active": `+tt.active+`}}`)
		_, err := load([]string{"-config", path})
		assert.EqualError(t, err, path+": "+tt.want, "active %s", tt.active)
	}
}
