package main

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
)

// TestStatusActionsByBearerToken runs the README's curl lines: each action
// is one POST with the bearer token and no page token (it used to get 403
// "missing or invalid csrf token"). Basic authentication, which browsers
// resend by themselves, still needs the page token.
func TestStatusActionsByBearerToken(t *testing.T) {
	const token = "0123456789abcdef" // the shortest token the config takes
	t.Setenv("TINYLB_TEST_STATUS_TOKEN", token)
	a, b, c := newCheckedBackend(t, "a"), newCheckedBackend(t, "b"), newCheckedBackend(t, "c")
	path := writeConfig(t, fmt.Sprintf(`{
		"backends": [{"url": %q}, {"url": %q}, {"url": %q}],
		"status": {"listen": "127.0.0.1:0", "actions": true, "token_env": "TINYLB_TEST_STATUS_TOKEN"}
	}`, a.URL, b.URL, c.URL))
	r := start(t, "-config", path)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := noRedirects(tr)
	status := "http://" + r.p.StatusAddr().String() + "/"

	// curl -H "Authorization: Bearer $TINYLB_TOKEN" -H 'Accept: application/json' -d … "$S"
	curl := func(form url.Values, auth func(*http.Request)) (int, string) {
		t.Helper()
		resp, body := statusDo(t, client, http.MethodPost, status, form, func(req *http.Request) {
			req.Header.Set("Accept", "application/json")
			auth(req)
		})
		return resp.StatusCode, body
	}
	bearer := func(req *http.Request) { req.Header.Set("Authorization", "Bearer "+token) }
	for _, step := range []struct {
		form  url.Values
		check func()
	}{
		{url.Values{"action": {"drain"}, "backend": {c.URL}}, func() {
			assert.Equal(t, lb.StateDraining, backendStats(t, r.p.bal, c.URL).State, "after drain")
		}},
		{url.Values{"action": {"maintenance-on"}, "backend": {b.URL}}, func() {
			assert.Equal(t, lb.StateMaintenance, backendStats(t, r.p.bal, b.URL).State, "after maintenance-on")
		}},
		{url.Values{"action": {"maintenance-off"}, "backend": {b.URL}}, func() {
			assert.Equal(t, lb.StateUp, backendStats(t, r.p.bal, b.URL).State, "after maintenance-off")
		}},
		{url.Values{"action": {"weight"}, "weight": {"10"}, "backend": {a.URL}}, func() {
			assert.Equal(t, 10, backendStats(t, r.p.bal, a.URL).Weight, "after weight")
		}},
	} {
		code, body := curl(step.form, bearer)
		require.Equal(t, http.StatusOK, code, "%s with the bearer token: %s", step.form.Get("action"), body)
		assert.JSONEq(t, fmt.Sprintf(`{"ok":true,"action":%q,"backend":%q}`, step.form.Get("action"), step.form.Get("backend")), body)
		step.check()
	}

	code, body := curl(url.Values{"action": {"maintenance-on"}, "backend": {a.URL}},
		func(req *http.Request) { req.SetBasicAuth("admin", token) })
	assert.Equal(t, http.StatusForbidden, code, "basic authentication without the page token: %s", body)
	assert.Contains(t, body, "missing or invalid csrf token")
	assert.Equal(t, lb.StateUp, backendStats(t, r.p.bal, a.URL).State, "after the refused action")
}
