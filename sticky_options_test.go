package lb_test

import (
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
)

// stickyValueRe is a cookie value: 22 characters of unpadded base64url.
var stickyValueRe = regexp.MustCompile(`^[A-Za-z0-9_-]{22}$`)

// The cookie's attributes are exactly the ones configured, in the order
// http.Cookie writes them, and nothing else.
func TestStickyCookieAttributes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		c    lb.StickyCookie
		want string // the Set-Cookie header with V for the value
	}{
		{"defaults", lb.StickyCookie{}, "tinylb=V; Path=/"},
		{"all", lb.StickyCookie{Name: "SRV", Path: "/app", Domain: "example.test", MaxAge: 90 * time.Minute,
			Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode},
			"SRV=V; Path=/app; Domain=example.test; Max-Age=5400; HttpOnly; Secure; SameSite=Strict"},
		{"lax", lb.StickyCookie{SameSite: http.SameSiteLaxMode, HttpOnly: true}, "tinylb=V; Path=/; HttpOnly; SameSite=Lax"},
		{"none", lb.StickyCookie{SameSite: http.SameSiteNoneMode, Secure: true}, "tinylb=V; Path=/; Secure; SameSite=None"},
		{"default mode", lb.StickyCookie{SameSite: http.SameSiteDefaultMode}, "tinylb=V; Path=/"},
		{"whole seconds", lb.StickyCookie{MaxAge: 1500 * time.Millisecond}, "tinylb=V; Path=/; Max-Age=1"},
		{"host prefix", lb.StickyCookie{Name: "__Host-lb", Secure: true}, "__Host-lb=V; Path=/; Secure"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up := startUpstream(t, "a", nil)
			pool, _ := poolOf(t, up.url)
			c := tc.c
			c.Secret = stickySecret
			g := startGateway(t, pool, nil, lb.WithStickyCookie(c))
			out := g.mustDo(t, http.MethodGet, "/", "", nil, nil)
			set := out.header.Values("Set-Cookie")
			require.Len(t, set, 1)
			name, rest, _ := strings.Cut(set[0], "=")
			value, attrs, _ := strings.Cut(rest, ";")
			assert.Regexp(t, stickyValueRe, value)
			assert.Equal(t, tc.want, name+"=V;"+attrs)
		})
	}
}

// Validate names what is wrong, with ErrInvalidStickyCookie; New panics
// with the same message, prefixed with the option's name.
func TestStickyCookieValidate(t *testing.T) {
	t.Parallel()
	ok := lb.StickyCookie{Secret: stickySecret}
	require.NoError(t, ok.Validate())
	for _, tc := range []struct {
		name string
		mod  func(*lb.StickyCookie)
		want string
	}{
		{"no secret", func(c *lb.StickyCookie) { c.Secret = nil }, "Secret is 0 bytes, want at least 16"},
		{"short secret", func(c *lb.StickyCookie) { c.Secret = []byte("15 bytes secret") }, "Secret is 15 bytes"},
		{"negative max-age", func(c *lb.StickyCookie) { c.MaxAge = -time.Second }, "MaxAge -1s"},
		{"sub-second max-age", func(c *lb.StickyCookie) { c.MaxAge = 500 * time.Millisecond }, "MaxAge 500ms"},
		{"relative path", func(c *lb.StickyCookie) { c.Path = "app" }, `Path "app": must start with /`},
		{"path with ;", func(c *lb.StickyCookie) { c.Path = "/a;b" }, "in Cookie.Path"},
		{"name with space", func(c *lb.StickyCookie) { c.Name = "my lb" }, "invalid Cookie.Name"},
		{"name with =", func(c *lb.StickyCookie) { c.Name = "a=b" }, "invalid Cookie.Name"},
		{"bad domain", func(c *lb.StickyCookie) { c.Domain = "exa mple.test" }, "invalid Cookie.Domain"},
		{"SameSite=None without Secure", func(c *lb.StickyCookie) { c.SameSite = http.SameSiteNoneMode }, "SameSite=None needs Secure"},
		{"__Secure- without Secure", func(c *lb.StickyCookie) { c.Name = "__Secure-lb" }, "__Secure- prefix needs Secure"},
		{"__Host- without Secure", func(c *lb.StickyCookie) { c.Name = "__Host-lb" }, "__Host- prefix needs Secure"},
		{"__Host- with a Domain", func(c *lb.StickyCookie) {
			c.Name, c.Secure, c.Domain = "__Host-lb", true, "example.test"
		}, "__Host- prefix"},
		{"__Host- with a Path", func(c *lb.StickyCookie) { c.Name, c.Secure, c.Path = "__Host-lb", true, "/app" }, "__Host- prefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := ok
			tc.mod(&c)
			err := c.Validate()
			require.Error(t, err)
			assert.True(t, errors.Is(err, lb.ErrInvalidStickyCookie), "%v does not wrap ErrInvalidStickyCookie", err)
			assert.Contains(t, err.Error(), tc.want)

			up := startUpstream(t, "a", nil)
			pool, _ := poolOf(t, up.url)
			assert.PanicsWithValue(t, "lb: WithStickyCookie: "+err.Error(), func() {
				lb.New(pool, nil, lb.WithStickyCookie(c)).Close()
			})
		})
	}
}

// WithStickyCookie copies the secret: changing the caller's slice later
// changes no cookie.
func TestStickyCookieSecretCopied(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, "a", nil)
	secret := append([]byte(nil), stickySecret...)
	opt := lb.WithStickyCookie(lb.StickyCookie{Secret: secret})
	clear(secret)
	pool, _ := poolOf(t, up.url)
	g := startGateway(t, pool, nil, opt)
	pool2, _ := poolOf(t, up.url)
	g2 := startGateway(t, pool2, nil, lb.WithStickyCookie(lb.StickyCookie{Secret: stickySecret}))
	a, b := g.stickyGet(t, "tinylb", ""), g2.stickyGet(t, "tinylb", "")
	require.NotNil(t, a.set)
	require.NotNil(t, b.set)
	assert.Equal(t, b.set.Value, a.set.Value)
}
