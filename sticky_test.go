package lb_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
)

// stickySecret is the secret of the sticky tests' balancers.
var stickySecret = []byte("sticky test secret, 32 bytes....")

// stickyRig is three backends a, b, c behind a round-robin balancer with
// sticky cookies.
type stickyRig struct {
	ups  []*upstream
	pool *lb.Pool
	g    *gateway
}

func newStickyRig(t *testing.T, c lb.StickyCookie, opts ...lb.Option) *stickyRig {
	t.Helper()
	r := &stickyRig{}
	for _, n := range []string{"a", "b", "c"} {
		r.ups = append(r.ups, startUpstream(t, n, nil))
	}
	r.pool, _ = poolOf(t, urlsOf(r.ups...)...)
	if c.Secret == nil {
		c.Secret = stickySecret
	}
	r.g = startGateway(t, r.pool, lb.RoundRobin(), append(opts, lb.WithStickyCookie(c))...)
	return r
}

// stickyAnswer is one answer through a sticky balancer.
type stickyAnswer struct {
	name   string       // the backend that answered
	set    *http.Cookie // the sticky cookie it set, nil if none
	header http.Header
}

// stickyGet sends a GET with the sticky cookie set to value (none if
// empty) and extra cookies, and reads which backend answered and what
// sticky cookie came back.
func (g *gateway) stickyGet(t *testing.T, name, value string, extra ...string) stickyAnswer {
	t.Helper()
	var cookies []string
	if value != "" {
		cookies = append(cookies, name+"="+value)
	}
	cookies = append(cookies, extra...)
	hdr := http.Header{}
	if len(cookies) > 0 {
		hdr.Set("Cookie", strings.Join(cookies, "; "))
	}
	out := g.mustDo(t, http.MethodGet, "/", "", nil, hdr)
	require.Equalf(t, http.StatusOK, out.status, "GET: %q", out.body)
	backend, _, _ := strings.Cut(string(out.body), "|")
	return stickyAnswer{name: backend, set: setCookieNamed(t, out.header, name), header: out.header}
}

// setCookieNamed returns the cookie named name that h sets, nil if none;
// it fails the test if h sets it more than once.
func setCookieNamed(t *testing.T, h http.Header, name string) *http.Cookie {
	t.Helper()
	var found *http.Cookie
	for _, line := range h.Values("Set-Cookie") {
		c, err := http.ParseSetCookie(line)
		require.NoErrorf(t, err, "Set-Cookie %q", line)
		if c.Name == name {
			require.Nilf(t, found, "the answer sets %s twice: %q", name, h.Values("Set-Cookie"))
			found = c
		}
	}
	return found
}

// cookiesByBackend returns the sticky cookie value of each of the n
// backends behind g, by name, from the answers to requests without a
// cookie.
func cookiesByBackend(t *testing.T, g *gateway, name string, n int) map[string]string {
	t.Helper()
	got := map[string]string{}
	for range 3 * n {
		a := g.stickyGet(t, name, "")
		require.NotNilf(t, a.set, "an answer to a request without a cookie sets none (from %s)", a.name)
		if v, ok := got[a.name]; ok {
			require.Equal(t, v, a.set.Value, "two cookies for one backend")
		}
		got[a.name] = a.set.Value
		if len(got) == n {
			return got
		}
	}
	t.Fatalf("requests reached only %v of %d backends", got, n)
	return nil
}

var stickyPaths = []struct {
	name string
	opts []lb.Option
}{
	{"relay", nil},
	{"reverseproxy", []lb.Option{lb.ViaReverseProxy()}},
}

// The first answer sets a cookie; requests that carry it go to its backend
// 50 times in a row, with no Set-Cookie, while requests without it go
// round robin; each backend has its own cookie.
func TestStickyCookieSticks(t *testing.T) {
	for _, p := range stickyPaths {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			r := newStickyRig(t, lb.StickyCookie{}, p.opts...)
			first := r.g.stickyGet(t, "tinylb", "")
			require.NotNil(t, first.set, "the first answer sets no sticky cookie")
			assert.Equal(t, "/", first.set.Path)
			assert.Equal(t, []string{`no-cache="Set-Cookie"`}, first.header.Values("Cache-Control"))

			others := map[string]int{}
			for i := range 50 {
				a := r.g.stickyGet(t, "tinylb", first.set.Value)
				require.Equalf(t, first.name, a.name, "request %d with the cookie of %s", i, first.name)
				require.Nilf(t, a.set, "request %d: the cookie was right, yet the answer sets it", i)
				require.Emptyf(t, a.header.Values("Cache-Control"), "request %d: no cookie set, yet Cache-Control", i)
				others[r.g.stickyGet(t, "tinylb", "").name]++
			}
			assert.Len(t, others, 3, "requests without a cookie did not go round robin: %v", others)

			byBackend := cookiesByBackend(t, r.g, "tinylb", 3)
			assert.Len(t, map[string]bool{byBackend["a"]: true, byBackend["b"]: true, byBackend["c"]: true}, 3,
				"backends share a cookie: %v", byBackend)
			for name, v := range byBackend {
				for range 3 {
					assert.Equal(t, name, r.g.stickyGet(t, "tinylb", v).name)
				}
			}
			st := r.g.bal.Stats()
			for i, bs := range st.Backends {
				want := int64(3)
				if r.ups[i].name == first.name {
					want += 50
				}
				assert.Equalf(t, want, bs.StickyHits, "sticky hits of %s", r.ups[i].name)
			}
			assert.Equal(t, int64(50+9), st.StickyHits)
			assert.Zero(t, st.StickyMisses)
			assert.Zero(t, st.StickyRewrites)
		})
	}
}

// The cookie names a backend by a MAC: neither its address, its port nor
// any encoding of its URL appears in it.
func TestStickyCookieHidesAddress(t *testing.T) {
	t.Parallel()
	r := newStickyRig(t, lb.StickyCookie{})
	for name, v := range cookiesByBackend(t, r.g, "tinylb", 3) {
		up := map[string]*upstream{"a": r.ups[0], "b": r.ups[1], "c": r.ups[2]}[name]
		u, err := url.Parse(up.url)
		require.NoError(t, err)
		assert.Len(t, v, 22, "cookie %q", v)
		for _, secret := range []string{u.Host, u.Hostname(), u.Port(), up.url, url.QueryEscape(up.url)} {
			assert.NotContainsf(t, v, secret, "the cookie of %s gives away %q", name, secret)
		}
		for _, enc := range []string{"MTI3LjAuMC4x", "127", "7f000001"} { // base64 and hex of 127.0.0.1
			assert.NotContains(t, v, enc)
		}
	}
}

// The balancer's cookie is its own: it is removed from the request a
// backend gets, the other cookies pass in order, and a backend's own
// Set-Cookie headers reach the client next to the balancer's.
func TestStickyCookieIndirect(t *testing.T) {
	for _, p := range stickyPaths {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			up := startUpstream(t, "a", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Add("Set-Cookie", "session=s1; Path=/; HttpOnly")
				w.Header().Add("Set-Cookie", "theme=dark")
				w.Header().Set("Cache-Control", "max-age=60")
				answerName(w, r, "a")
			})
			pool, _ := poolOf(t, up.url)
			g := startGateway(t, pool, nil, append(p.opts, lb.WithStickyCookie(lb.StickyCookie{Secret: stickySecret}))...)

			first := g.mustDo(t, http.MethodGet, "/", "r1", nil, http.Header{"Cookie": {"pref=1; tinylb=forged; lang=en"}})
			require.Equal(t, http.StatusOK, first.status)
			assert.Equal(t, []string{"pref=1; lang=en"}, up.get(t, "r1").header.Values("Cookie"))
			set := first.header.Values("Set-Cookie")
			require.Len(t, set, 3, "Set-Cookie: %q", set)
			assert.Equal(t, "session=s1; Path=/; HttpOnly", set[0])
			assert.Equal(t, "theme=dark", set[1])
			c, err := http.ParseSetCookie(set[2])
			require.NoError(t, err)
			assert.Equal(t, "tinylb", c.Name)
			assert.Equal(t, []string{"max-age=60", `no-cache="Set-Cookie"`}, first.header.Values("Cache-Control"))

			// Only the balancer's cookie, on two lines as HTTP/2 sends them.
			again := g.mustDo(t, http.MethodGet, "/", "r2", nil, http.Header{"Cookie": {"tinylb=" + c.Value}})
			assert.Empty(t, up.get(t, "r2").header.Values("Cookie"), "the backend got the balancer's cookie")
			assert.Len(t, again.header.Values("Set-Cookie"), 2, "the right cookie is set again: %q", again.header.Values("Set-Cookie"))
			assert.Equal(t, []string{"max-age=60"}, again.header.Values("Cache-Control"))

			g.mustDo(t, http.MethodGet, "/", "r3", nil, http.Header{"Cookie": {"tinylb=" + c.Value + "; a=1", "b=2; tinylb=x; c=3"}})
			assert.Equal(t, []string{"a=1", "b=2; c=3"}, up.get(t, "r3").header.Values("Cookie"))
		})
	}
}

// A cookie changed in one character, made with another secret, or no
// cookie of the balancer's at all names no backend: the strategy balances
// the request (round robin visits every backend) and the answer sets a
// right cookie, which then sticks.
func TestStickyForgedCookieIgnored(t *testing.T) {
	t.Parallel()
	r := newStickyRig(t, lb.StickyCookie{})
	good := r.g.stickyGet(t, "tinylb", "")
	require.NotNil(t, good.set)

	// The same backends behind a balancer with another secret.
	pool2, _ := poolOf(t, urlsOf(r.ups...)...)
	g2 := startGateway(t, pool2, nil, lb.WithStickyCookie(lb.StickyCookie{Secret: []byte("another secret, 32 bytes long...")}))
	foreign := g2.stickyGet(t, "tinylb", "")
	require.NotNil(t, foreign.set)
	require.NotEqual(t, good.set.Value, foreign.set.Value)

	v := []byte(good.set.Value)
	v[len(v)/2] ^= 1
	tampered := string(v)
	for _, bad := range []string{tampered, foreign.set.Value, good.set.Value[:21], good.set.Value + "A", "http%3A%2F%2F127.0.0.1", `""`} {
		seen := map[string]bool{}
		for i := range 3 {
			a := r.g.stickyGet(t, "tinylb", bad)
			seen[a.name] = true
			require.NotNilf(t, a.set, "cookie %q, request %d: not re-issued", bad, i)
			assert.Equal(t, a.name, r.g.stickyGet(t, "tinylb", a.set.Value).name, "the re-issued cookie does not stick")
		}
		assert.Lenf(t, seen, 3, "cookie %q pinned requests to %v", bad, seen)
	}
	st := r.g.bal.Stats()
	assert.Equal(t, int64(6*3), st.StickyMisses)
	assert.Equal(t, int64(6*3), st.StickyRewrites)
	assert.Equal(t, int64(6*3), st.StickyHits)
}

// Two balancers that share nothing but the secret, over the same servers
// spelled differently, honour each other's cookies.
func TestStickySharedSecret(t *testing.T) {
	t.Parallel()
	r := newStickyRig(t, lb.StickyCookie{})
	var spelled []string
	for _, up := range r.ups {
		spelled = append(spelled, strings.Replace(up.url, "http://", "HTTP://", 1)+"/")
	}
	pool2, _ := poolOf(t, spelled[2], spelled[0], spelled[1]) // another order too
	g2 := startGateway(t, pool2, lb.SmoothWeighted(), lb.WithStickyCookie(lb.StickyCookie{Secret: append([]byte(nil), stickySecret...)}))
	for name, v := range cookiesByBackend(t, r.g, "tinylb", 3) {
		for range 5 {
			a := g2.stickyGet(t, "tinylb", v)
			assert.Equal(t, name, a.name, "the other balancer does not honour the cookie of %s", name)
			assert.Nil(t, a.set)
		}
	}
	for name, v := range cookiesByBackend(t, g2, "tinylb", 3) {
		assert.Equal(t, name, r.g.stickyGet(t, "tinylb", v).name)
	}
}

// A backend in maintenance or draining takes no sticky request: the
// strategy chooses another, whose cookie the answer sets. Back in
// service, the backend gets its old cookie's requests again.
func TestStickyUnusableBackend(t *testing.T) {
	t.Parallel()
	r := newStickyRig(t, lb.StickyCookie{})
	cookies := cookiesByBackend(t, r.g, "tinylb", 3)
	aURL := r.ups[0].url

	require.NoError(t, r.pool.SetMaintenance(aURL, true))
	for range 4 {
		a := r.g.stickyGet(t, "tinylb", cookies["a"])
		require.NotEqual(t, "a", a.name, "a sticky request reached a backend in maintenance")
		require.NotNil(t, a.set)
		assert.Equal(t, cookies[a.name], a.set.Value, "the cookie is not rewritten to the backend that answered")
	}
	require.NoError(t, r.pool.SetMaintenance(aURL, false))
	assert.Equal(t, "a", r.g.stickyGet(t, "tinylb", cookies["a"]).name)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	require.NoError(t, r.pool.Drain(ctx, aURL))
	for range 4 {
		a := r.g.stickyGet(t, "tinylb", cookies["a"])
		require.NotEqual(t, "a", a.name, "a sticky request reached a draining backend")
		require.NotNil(t, a.set)
		assert.Equal(t, cookies[a.name], a.set.Value)
	}
	// Removed: its cookie names no backend any more.
	require.NoError(t, r.pool.Remove(aURL))
	a := r.g.stickyGet(t, "tinylb", cookies["a"])
	assert.NotEqual(t, "a", a.name)
	assert.NotNil(t, a.set)
	assert.Equal(t, int64(9), r.g.bal.Stats().StickyMisses)
}

// A sticky backend that went away: the attempt fails, is retried on
// another backend, and the answer moves the cookie there; passive health
// takes the dead backend out, and its cookie's next requests go straight
// elsewhere.
func TestStickyBackendDown(t *testing.T) {
	for _, p := range stickyPaths {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			r := newStickyRig(t, lb.StickyCookie{}, p.opts...)
			cookies := cookiesByBackend(t, r.g, "tinylb", 3)
			r.ups[1].srv.Close() // b

			a := r.g.stickyGet(t, "tinylb", cookies["b"])
			require.NotEqual(t, "b", a.name)
			require.NotNil(t, a.set, "the cookie was not rewritten after the retry")
			assert.Equal(t, cookies[a.name], a.set.Value)
			st := r.g.bal.Stats()
			assert.Equal(t, int64(1), st.StickyHits, "the first attempt went by the cookie")
			assert.Equal(t, int64(1), st.StickyRewrites)
			assert.Zero(t, st.StickyMisses)

			for range 4 {
				a := r.g.stickyGet(t, "tinylb", cookies["b"])
				require.NotEqual(t, "b", a.name)
				require.NotNil(t, a.set)
				assert.Equal(t, cookies[a.name], a.set.Value)
				assert.Equal(t, a.name, r.g.stickyGet(t, "tinylb", a.set.Value).name)
			}
			st = r.g.bal.Stats()
			assert.Equal(t, int64(4), st.StickyMisses)
			assert.Equal(t, int64(1), st.Backends[1].Failures, "the ejected backend was tried again")
		})
	}
}

// A retry on another backend, after a status the policy retries, moves
// the cookie to the backend whose answer the client gets.
func TestStickyRetryRewritesCookie(t *testing.T) {
	t.Parallel()
	bad := startUpstream(t, "bad", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "busy", http.StatusServiceUnavailable)
	})
	good := startUpstream(t, "good", nil)
	pool, _ := poolOf(t, bad.url, good.url)
	g := startGateway(t, pool, nil, lb.WithRetry(lb.RetryPolicy{Statuses: []int{503}}),
		lb.WithStickyCookie(lb.StickyCookie{Secret: stickySecret}))
	// The cookie of bad, from a balancer that finds it healthy.
	pool2, _ := poolOf(t, bad.url)
	bad2 := startGateway(t, pool2, nil, lb.WithStickyCookie(lb.StickyCookie{Secret: stickySecret}))
	out := bad2.mustDo(t, http.MethodGet, "/", "", nil, nil)
	require.Equal(t, http.StatusServiceUnavailable, out.status)
	badCookie := setCookieNamed(t, out.header, "tinylb")
	require.NotNil(t, badCookie, "a backend's 503 sets the cookie too: it says where the answer came from")

	a := g.stickyGet(t, "tinylb", badCookie.Value)
	assert.Equal(t, "good", a.name)
	require.NotNil(t, a.set)
	assert.Equal(t, "good", g.stickyGet(t, "tinylb", a.set.Value).name)
	assert.Equal(t, 2, bad.count(), "the sticky request did not try its backend first")
	st := g.bal.Stats()
	assert.Equal(t, int64(1), st.Backends[0].StickyHits)
	assert.Equal(t, int64(1), st.Backends[1].StickyHits)
	assert.Equal(t, int64(1), st.StickyRewrites)
}

// A WebSocket handshake goes to the cookie's backend, and the 101 of one
// without a cookie sets it.
func TestStickyUpgrade(t *testing.T) {
	t.Parallel()
	a := startUpstream(t, "a", upgrader("a", "websocket"))
	b := startUpstream(t, "b", upgrader("b", "websocket"))
	pool, _ := poolOf(t, a.url, b.url)
	g := startGateway(t, pool, nil, lb.WithStickyCookie(lb.StickyCookie{Secret: stickySecret}))
	cookies := cookiesByBackend(t, g, "tinylb", 2)

	conn, br, resp := dialUpgrade(t, g)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	set := setCookieNamed(t, resp.Header, "tinylb")
	require.NotNil(t, set, "the 101 sets no sticky cookie")
	greeting, err := br.ReadString('\n')
	require.NoError(t, err)
	name := strings.TrimSpace(strings.TrimPrefix(greeting, "hello from "))
	assert.Equal(t, cookies[name], set.Value)
	conn.Close()

	for _, name := range []string{"a", "b", "a"} {
		conn, br, resp := dialUpgradeWith(t, g, "Cookie: tinylb="+cookies[name])
		require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
		assert.Nil(t, setCookieNamed(t, resp.Header, "tinylb"))
		greeting, err := br.ReadString('\n')
		require.NoError(t, err)
		assert.Equal(t, "hello from "+name+"\n", greeting)
		conn.Close()
	}
}

// dialUpgradeWith is dialUpgrade with one more header line.
func dialUpgradeWith(t *testing.T, g *gateway, line string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", g.srv.Listener.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: chat.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n%s\r\n\r\n", line)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err, "reading the upgrade answer")
	return conn, br, resp
}

// A backup's cookie is honoured while the backups serve, and not once a
// primary is back: the request goes to the primaries, and the cookie with
// it.
func TestStickyBackupTier(t *testing.T) {
	t.Parallel()
	p, k := startUpstream(t, "primary", nil), startUpstream(t, "backup", nil)
	pool, err := lb.NewPool(backendFor(t, p.url), backendFor(t, k.url, lb.AsBackup()))
	require.NoError(t, err)
	g := startGateway(t, pool, nil, lb.WithStickyCookie(lb.StickyCookie{Secret: stickySecret}))
	primary := g.stickyGet(t, "tinylb", "")
	require.Equal(t, "primary", primary.name)
	require.NotNil(t, primary.set)

	require.NoError(t, pool.SetMaintenance(p.url, true))
	backup := g.stickyGet(t, "tinylb", primary.set.Value)
	require.Equal(t, "backup", backup.name)
	require.NotNil(t, backup.set)
	assert.Equal(t, "backup", g.stickyGet(t, "tinylb", backup.set.Value).name)

	require.NoError(t, pool.SetMaintenance(p.url, false))
	back := g.stickyGet(t, "tinylb", backup.set.Value)
	assert.Equal(t, "primary", back.name, "a backup's cookie kept a request off the primaries")
	require.NotNil(t, back.set)
	assert.Equal(t, primary.set.Value, back.set.Value)
}
