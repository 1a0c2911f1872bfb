package lb_test

import (
	"crypto/subtle"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
)

// statusTokenAuth accepts the token as a bearer token or as the password of
// basic authentication, as the standalone proxy does.
func statusTokenAuth(token string) func(*http.Request) bool {
	return func(r *http.Request) bool {
		got := ""
		if _, pass, ok := r.BasicAuth(); ok {
			got = pass
		} else if scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
			got = cred
		}
		return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
	}
}

// actionSite is a balancer over n backends with its status page, actions
// on, served at the root of its own server.
type actionSite struct {
	bal  *lb.Balancer
	urls []string
	page string // URL of the status page
}

func startActionSite(t *testing.T, n int, token string) *actionSite {
	t.Helper()
	var bes []*upstream
	for i := range n {
		bes = append(bes, startUpstream(t, string(rune('a'+i)), nil))
	}
	pool, _ := poolOf(t, urlsOf(bes...)...)
	bal := lb.New(pool, lb.RoundRobin())
	t.Cleanup(func() { bal.Close() })
	srv := httptest.NewServer(lb.StatusHandler(bal, lb.WithStatusActions(statusTokenAuth(token))))
	t.Cleanup(srv.Close)
	return &actionSite{bal: bal, urls: urlsOf(bes...), page: srv.URL + "/"}
}

// act posts form to the page, as curl -d does (no Origin, no
// Sec-Fetch-Site), after edit; it returns the status and the body.
func (s *actionSite) act(t *testing.T, form url.Values, edit func(*http.Request)) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.page, strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if edit != nil {
		edit(req)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

func (s *actionSite) backend(t *testing.T, u string) lb.BackendStats {
	t.Helper()
	for _, bs := range s.bal.Stats().Backends {
		if bs.URL == u {
			return bs
		}
	}
	t.Fatalf("no backend %s in Stats", u)
	panic("unreachable")
}

const statusTestToken = "0123456789abcdef-status-token"

func bearerAuth(token string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }
}

// TestStatusActionsBearerNeedsNoCSRF: a request with a bearer token that
// authorize accepts acts without the page's CSRF token, for every action
// (it used to get 403 "missing or invalid csrf token"); a wrong bearer
// token, or a bearer request from another origin's browser, is refused.
func TestStatusActionsBearerNeedsNoCSRF(t *testing.T) {
	s := startActionSite(t, 3, statusTestToken)
	bearer := bearerAuth(statusTestToken)

	code, body := s.act(t, url.Values{"action": {"drain"}, "backend": {s.urls[0]}}, bearer)
	require.Equal(t, http.StatusOK, code, "drain: %s", body)
	assert.JSONEq(t, `{"ok":true,"action":"drain","backend":"`+s.urls[0]+`"}`, body)
	assert.Equal(t, lb.StateDraining, s.backend(t, s.urls[0]).State)

	code, body = s.act(t, url.Values{"action": {"maintenance-on"}, "backend": {s.urls[1]}}, bearer)
	require.Equal(t, http.StatusOK, code, "maintenance-on: %s", body)
	assert.Equal(t, lb.StateMaintenance, s.backend(t, s.urls[1]).State)
	// The scheme is case-insensitive (RFC 9110 §11.1).
	code, body = s.act(t, url.Values{"action": {"maintenance-off"}, "backend": {s.urls[1]}},
		func(r *http.Request) { r.Header.Set("Authorization", "bearer "+statusTestToken) })
	require.Equal(t, http.StatusOK, code, "maintenance-off: %s", body)
	assert.Equal(t, lb.StateUp, s.backend(t, s.urls[1]).State)

	code, body = s.act(t, url.Values{"action": {"weight"}, "backend": {s.urls[2]}, "weight": {"7"}}, bearer)
	require.Equal(t, http.StatusOK, code, "weight: %s", body)
	assert.Equal(t, 7, s.backend(t, s.urls[2]).Weight)

	// Refused: a wrong token, and a browser of another origin even with
	// the right one (the origin check comes first).
	form := url.Values{"action": {"weight"}, "backend": {s.urls[2]}, "weight": {"3"}}
	code, body = s.act(t, form, bearerAuth("wrong-token-wrong-token"))
	assert.Equal(t, http.StatusForbidden, code, "wrong bearer token: %s", body)
	assert.Contains(t, body, "not authorized")
	code, body = s.act(t, form, func(r *http.Request) { bearer(r); r.Header.Set("Sec-Fetch-Site", "cross-site") })
	assert.Equal(t, http.StatusForbidden, code, "cross-site bearer request: %s", body)
	assert.Contains(t, body, "cross-origin request refused")
	assert.Equal(t, 7, s.backend(t, s.urls[2]).Weight, "weight after refused actions")
}

// TestStatusActionsBasicStillNeedCSRF: basic credentials are ambient (a
// browser resends them with any form posted to the site), so a request
// authorized by them still needs the page's CSRF token.
func TestStatusActionsBasicStillNeedCSRF(t *testing.T) {
	s := startActionSite(t, 1, statusTestToken)
	basic := func(r *http.Request) { r.SetBasicAuth("admin", statusTestToken) }
	form := url.Values{"action": {"maintenance-on"}, "backend": {s.urls[0]}}

	code, body := s.act(t, form, basic)
	assert.Equal(t, http.StatusForbidden, code, "basic auth without the csrf token: %s", body)
	assert.Contains(t, body, "missing or invalid csrf token")
	form.Set("csrf", "not-the-token")
	code, body = s.act(t, form, basic)
	assert.Equal(t, http.StatusForbidden, code, "basic auth with a wrong csrf token: %s", body)
	// An empty bearer credential is no bearer token.
	code, body = s.act(t, url.Values{"action": {"maintenance-on"}, "backend": {s.urls[0]}},
		func(r *http.Request) { r.Header.Set("Authorization", "Bearer ") })
	assert.Equal(t, http.StatusForbidden, code, "empty bearer: %s", body)
	assert.Equal(t, lb.StateUp, s.backend(t, s.urls[0]).State, "state after refused actions")

	// With the token of the page it serves to the same credentials, it acts.
	req, err := http.NewRequest(http.MethodGet, s.page, nil)
	require.NoError(t, err)
	basic(req)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	page, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page)
	require.NotNil(t, m, "the page shows no action form to basic credentials")
	form.Set("csrf", string(m[1]))
	code, body = s.act(t, form, basic)
	require.Equal(t, http.StatusOK, code, "basic auth with the csrf token: %s", body)
	assert.Equal(t, lb.StateMaintenance, s.backend(t, s.urls[0]).State)
}
