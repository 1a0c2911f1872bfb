package lb_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
)

// TestBackendKeyDropsDefaultPort checks the normal form of a backend's key:
// the scheme's default port goes, any other port stays, in decimal.
func TestBackendKeyDropsDefaultPort(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, key string }{
		{"http://x:80", "http://x"},
		{"HTTP://X:80/", "http://x"},
		{"http://x:0080", "http://x"},
		{"https://x:443", "https://x"},
		{"https://x:443/base/", "https://x/base"},
		{"http://x:443", "http://x:443"},
		{"https://x:80", "https://x:80"},
		{"http://x:08080", "http://x:8080"},
		{"http://[::1]:80", "http://[::1]"},
		{"http://[::1]:8080/", "http://[::1]:8080"},
		{"https://[2001:DB8::1]:443", "https://[2001:db8::1]"},
		{"http://10.0.0.1:8080", "http://10.0.0.1:8080"},
		{"http://x", "http://x"},
	} {
		assert.Equal(t, tc.key, backendFor(t, tc.in).Key(), "NewBackend(%q).Key()", tc.in)
	}
}

// TestPoolDefaultPortIsOneServer checks that two spellings of one server,
// with and without the default port, are duplicates in a pool, and that
// spellings of different servers are not.
func TestPoolDefaultPortIsOneServer(t *testing.T) {
	t.Parallel()
	for _, pair := range [][2]string{
		{"http://x", "http://x:80"},
		{"https://x", "https://x:443"},
		{"http://x:80/", "HTTP://X"},
		{"http://[::1]", "http://[::1]:80"},
		{"https://[::1]:443", "https://[::1]/"},
	} {
		_, err := lb.NewPool(backendFor(t, pair[0]), backendFor(t, pair[1]))
		require.ErrorIs(t, err, lb.ErrDuplicateBackend, "NewPool(%s, %s)", pair[0], pair[1])

		p, _ := poolOf(t, pair[0])
		require.ErrorIs(t, p.Add(backendFor(t, pair[1])), lb.ErrDuplicateBackend, "Add(%s) to a pool of %s", pair[1], pair[0])
		require.ErrorIs(t, p.Update(backendFor(t, pair[0]), backendFor(t, pair[1])), lb.ErrDuplicateBackend,
			"Update(%s, %s)", pair[0], pair[1])
	}
	for _, pair := range [][2]string{
		{"http://x", "https://x"},
		{"http://x:443", "https://x"},
		{"https://x:80", "http://x"},
		{"http://x", "http://x:8080"},
	} {
		_, err := lb.NewPool(backendFor(t, pair[0]), backendFor(t, pair[1]))
		require.NoError(t, err, "NewPool(%s, %s)", pair[0], pair[1])
	}
}

// TestPoolLookupAnySpelling checks that every look-up by URL finds a
// backend by another spelling of it: Get, SetWeight, SetMaintenance,
// Drain, Update (which keeps the Backend) and Remove.
func TestPoolLookupAnySpelling(t *testing.T) {
	t.Parallel()
	p, bes := poolOf(t, "http://x", "https://y:443/base", "http://[::1]:80")
	for i, spelling := range []string{"HTTP://X:80", "https://Y/base/", "http://[::1]"} {
		got, ok := p.Get(spelling)
		require.True(t, ok, "Get(%q)", spelling)
		assert.Same(t, bes[i], got, "Get(%q)", spelling)
	}
	require.NoError(t, p.SetWeight("http://X:80/", 7))
	assert.Equal(t, 7, bes[0].Weight(), "weight after SetWeight by another spelling")
	require.NoError(t, p.SetMaintenance("HTTPS://y:443/base", true))
	require.NoError(t, p.SetMaintenance("https://y/base", false))
	require.NoError(t, p.Drain(context.Background(), "http://x:80"))

	kept := backendFor(t, "HTTP://X:80/", lb.WithWeight(3))
	require.NoError(t, p.Update(kept, bes[1], bes[2]))
	got, ok := p.Get("http://x")
	require.True(t, ok)
	assert.Same(t, bes[0], got, "Update by another spelling keeps the Backend")
	assert.Equal(t, 3, bes[0].Weight(), "and takes the new weight")

	require.NoError(t, p.Remove("HTTP://X:80"))
	require.NoError(t, p.Remove("https://y:443/base/"))
	require.NoError(t, p.Remove("http://[::1]:80/"))
	assert.Zero(t, p.Len())
	require.ErrorIs(t, p.Remove("http://x"), lb.ErrUnknownBackend)
}

// TestConsistentHashDefaultPortSpellingsAgree checks that two balancers
// over the same servers, one given the URLs with the default port and one
// without, build the same ring: the points derive from the key, which is
// the same for both. The servers are httptest servers on 127.0.0.1 that a
// dialer maps the URLs' hosts to.
func TestConsistentHashDefaultPortSpellingsAgree(t *testing.T) {
	t.Parallel()
	ups := []*upstream{startUpstream(t, "a", nil), startUpstream(t, "b", nil), startUpstream(t, "c", nil)}
	addr := map[string]string{}
	var short, long []string
	for i, u := range ups {
		host := fmt.Sprintf("backend-%c.test", 'a'+i)
		addr[host+":80"] = hostPortOf(u.url)
		short = append(short, "http://"+host)
		long = append(long, "http://"+host+":80")
	}
	tr := lb.NewTransport()
	var d net.Dialer
	tr.DialContext = func(ctx context.Context, network, a string) (net.Conn, error) {
		to, ok := addr[a]
		if !ok {
			return nil, fmt.Errorf("test dialer: unexpected address %s", a)
		}
		return d.DialContext(ctx, network, to)
	}
	t.Cleanup(tr.CloseIdleConnections)
	p1, _ := poolOf(t, short...)
	p2, _ := poolOf(t, long...)
	g1 := startGateway(t, p1, lb.ConsistentHash(lb.HeaderKey("X-User")), lb.WithTransport(tr))
	g2 := startGateway(t, p2, lb.ConsistentHash(lb.HeaderKey("X-User")), lb.WithTransport(tr))
	used := map[string]bool{}
	for i := range 60 {
		hdr := http.Header{"X-User": {fmt.Sprintf("user-%d", i)}}
		want := g1.served(t, hdr)
		assert.Equal(t, want, g2.served(t, hdr), "key user-%d", i)
		used[want] = true
	}
	assert.Len(t, used, 3, "the keys spread over every backend")
}
