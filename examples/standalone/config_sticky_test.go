package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tinylb/lb"
)

// secretFile writes content to a file in the test's directory and returns
// its path.
func secretFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sticky.secret")
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

// stickyFile is a config file over the backends with the given
// sticky_cookie object.
func stickyFile(t *testing.T, sticky string, backends ...string) string {
	t.Helper()
	var list []string
	for _, b := range backends {
		list = append(list, fmt.Sprintf(`{"url": %q}`, b))
	}
	return writeConfig(t, fmt.Sprintf(`{"backends": [%s], "sticky_cookie": %s, "status": {"listen": "127.0.0.1:0"}}`,
		strings.Join(list, ", "), sticky))
}

func TestStickyCookieSecret(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef"
	// The file's final newline is not part of the secret: both files and
	// the environment variable give one cookie.
	t.Setenv("TINYLB_TEST_STICKY", secret)
	var got [][]byte
	for _, sticky := range []string{
		fmt.Sprintf(`{"secret_file": %q}`, secretFile(t, secret+"\n")),
		fmt.Sprintf(`{"secret_file": %q}`, secretFile(t, secret)),
		`{"secret_env": "TINYLB_TEST_STICKY"}`,
	} {
		c, err := load([]string{"-config", stickyFile(t, sticky, "http://127.0.0.1:9001")})
		require.NoError(t, err, sticky)
		got = append(got, c.StickyCookie.cookie().Secret)
	}
	for _, s := range got {
		assert.Equal(t, secret, string(s))
	}
}

func TestStickyCookieErrors(t *testing.T) {
	t.Setenv("TINYLB_TEST_STICKY", "0123456789abcdef")
	t.Setenv("TINYLB_TEST_SHORT", "short")
	good := secretFile(t, "0123456789abcdef0123456789abcdef")
	empty := secretFile(t, "\n") // a final newline is no secret
	for _, tt := range []struct {
		name, sticky, want string
		lib                bool // the error wraps lb.ErrInvalidStickyCookie
	}{
		{"no secret", `{}`, "sticky_cookie: needs sticky_cookie.secret_file or sticky_cookie.secret_env", false},
		{"both secrets", fmt.Sprintf(`{"secret_file": %q, "secret_env": "TINYLB_TEST_STICKY"}`, good),
			`sticky_cookie.secret_env: "TINYLB_TEST_STICKY": give sticky_cookie.secret_file or sticky_cookie.secret_env, not both`, false},
		{"empty secret file", fmt.Sprintf(`{"secret_file": %q}`, empty), fmt.Sprintf("sticky_cookie.secret_file: %q: the file is empty", empty), false},
		{"missing secret file", `{"secret_file": "/nonexistent/sticky.secret"}`,
			`sticky_cookie.secret_file: "/nonexistent/sticky.secret": open /nonexistent/sticky.secret: no such file or directory`, false},
		{"unset secret env", `{"secret_env": "TINYLB_TEST_UNSET"}`,
			`sticky_cookie.secret_env: "TINYLB_TEST_UNSET": the environment variable is empty or unset`, false},
		{"short secret", `{"secret_env": "TINYLB_TEST_SHORT"}`,
			"sticky_cookie.secret_env: Secret is 5 bytes, want at least 16", true},
		{"bad same_site", `{"secret_env": "TINYLB_TEST_STICKY", "same_site": "loose"}`,
			`sticky_cookie.same_site: "loose": want "lax", "strict", "none" or "" (no SameSite attribute)`, false},
		{"same_site none without secure", `{"secret_env": "TINYLB_TEST_STICKY", "same_site": "none"}`,
			"sticky_cookie.same_site: SameSite=None needs Secure", true},
		{"max_age under a second", `{"secret_env": "TINYLB_TEST_STICKY", "max_age": "500ms"}`,
			"sticky_cookie.max_age: MaxAge 500ms: want 0 (a session cookie) or at least 1s", true},
		{"relative path", `{"secret_env": "TINYLB_TEST_STICKY", "path": "app"}`,
			`sticky_cookie.path: Path "app": must start with /`, true},
		{"__Host- without secure", `{"secret_env": "TINYLB_TEST_STICKY", "name": "__Host-lb"}`,
			`sticky_cookie.name: Name "__Host-lb": the __Host- prefix needs Secure`, true},
		{"bad name", `{"secret_env": "TINYLB_TEST_STICKY", "name": "a b"}`, "sticky_cookie: http: invalid Cookie.Name", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := stickyFile(t, tt.sticky, "http://127.0.0.1:9001")
			_, err := load([]string{"-config", path})
			require.Error(t, err)
			assert.Contains(t, err.Error(), path+": "+tt.want)
			assert.NotContains(t, err.Error(), "0123456789abcdef", "the secret is never repeated")
			if tt.lib {
				assert.ErrorIs(t, err, lb.ErrInvalidStickyCookie)
			} else {
				assert.NotErrorIs(t, err, lb.ErrInvalidStickyCookie)
			}
		})
	}
	// A file of no bytes at all is empty too.
	path := stickyFile(t, fmt.Sprintf(`{"secret_file": %q}`, secretFile(t, "")), "http://127.0.0.1:9001")
	_, err := load([]string{"-config", path})
	assert.ErrorContains(t, err, "the file is empty")
}

// A client with the proxy's cookie stays on one backend; one without
// it goes round robin. The status page counts the sticky hits.
func TestStickyCookieSticks(t *testing.T) {
	a, b := backend(t, "a", 0), backend(t, "b", 0)
	secret := secretFile(t, "0123456789abcdef0123456789abcdef\n")
	r := start(t, "-config", stickyFile(t, fmt.Sprintf(`{"name": "srv", "secret_file": %q, "max_age": "1h", "http_only": true, "same_site": "lax"}`, secret), a.URL, b.URL))

	plain := &http.Client{Timeout: 10 * time.Second}
	defer plain.CloseIdleConnections()
	if got := spread(t, plain, r.url, 4); got["a"] != 2 || got["b"] != 2 {
		t.Fatalf("4 requests without the cookie went %v, want round robin", got)
	}

	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	client := &http.Client{Timeout: 10 * time.Second, Jar: jar}
	defer client.CloseIdleConnections()
	resp, err := client.Get(r.url)
	require.NoError(t, err)
	resp.Body.Close()
	setCookie := resp.Header.Get("Set-Cookie")
	for _, attr := range []string{"srv=", "Path=/", "Max-Age=3600", "HttpOnly", "SameSite=Lax"} {
		assert.Contains(t, setCookie, attr)
	}
	got := spread(t, client, r.url, 20)
	require.Len(t, got, 1, "20 requests with the cookie went %v, want one backend", got)

	// The status report shows the sticky column and the hits.
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	_, body := statusDo(t, noRedirects(tr), http.MethodGet, "http://"+r.p.StatusAddr().String()+"/json", nil, nil)
	var rep struct {
		Sticky   bool `json:"sticky"`
		Backends []struct {
			URL        string `json:"url"`
			StickyHits *int64 `json:"sticky_hits"`
		} `json:"backends"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &rep), body)
	assert.True(t, rep.Sticky, "status report without sticky: true")
	var hits int64
	for _, be := range rep.Backends {
		require.NotNil(t, be.StickyHits, "backend %s has no sticky_hits", be.URL)
		hits += *be.StickyHits
	}
	assert.Equal(t, int64(20), hits)
	_, page := statusDo(t, noRedirects(tr), http.MethodGet, "http://"+r.p.StatusAddr().String()+"/", nil, nil)
	assert.Contains(t, page, `data-k="sticky"`)
}

// A changed sticky_cookie, like every balancer option, needs a restart:
// a reload says so and keeps the cookie in effect.
func TestStickyCookieReload(t *testing.T) {
	a := backend(t, "a", 0)
	secret := secretFile(t, "0123456789abcdef0123456789abcdef")
	path := stickyFile(t, fmt.Sprintf(`{"secret_file": %q, "max_age": "1h"}`, secret), a.URL)
	r := start(t, "-config", path)
	rewrite(t, path, fmt.Sprintf(`{"backends": [{"url": %q}], "sticky_cookie": {"secret_file": %q, "max_age": "2h"}, "status": {"listen": "127.0.0.1:0"}}`, a.URL, secret))
	require.NoError(t, r.p.Reload())
	if lines := r.logs.lines("level=WARN", "needs restart", "sticky_cookie.max_age"); len(lines) != 1 {
		t.Errorf("no Warn log line naming sticky_cookie.max_age as needing a restart:\n%s", r.logs.lines())
	}
	assert.Equal(t, duration(time.Hour), r.p.config().StickyCookie.MaxAge)
}
