package lb_test

// Proxy tests of what reaches the backends: the backend URL's path joined
// to the request's, only pool members dialed whatever the request says, and
// connections to a backend reused.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/internal/rawhttp"
)

// TestPathJoining: the backend URL's path is joined in front of the
// request's, escapes are kept as sent, queries are merged; a retry joins
// the original path to the next backend's, not to the first one's.
func TestPathJoining(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, "a", nil)
	for _, tc := range []struct {
		base, path, want string
	}{
		{"/base", "/x?y=1", "/base/x?y=1"},
		{"/base/", "/x", "/base/x"},
		{"/base", "/", "/base/"},
		{"", "/a%2Fb", "/a%2Fb"},
		{"/base", "/a%2Fb?q=%2F", "/base/a%2Fb?q=%2F"},
		{"/b%2Fse", "/x", "/b%2Fse/x"},
		{"/base?k=v", "/x?y=1", "/base/x?k=v&y=1"},
		{"/base", "//x", "/base//x"},
	} {
		t.Run(tc.base+" "+tc.path, func(t *testing.T) {
			t.Parallel()
			pool, _ := poolOf(t, up.url+tc.base)
			g := startGateway(t, pool, lb.RoundRobin())
			id := "path " + tc.base + " " + tc.path
			r := g.mustDo(t, http.MethodGet, tc.path, id, nil, nil)
			if r.status != http.StatusOK {
				t.Fatalf("status %d", r.status)
			}
			if got := up.get(t, id).uri; got != tc.want {
				t.Errorf("backend %s, request %s: backend saw %q; want %q", tc.base, tc.path, got, tc.want)
			}
		})
	}

	t.Run("behind StripPrefix", func(t *testing.T) {
		t.Parallel()
		pool, _ := poolOf(t, up.url+"/base")
		bal := lb.New(pool, lb.RoundRobin())
		mux := http.NewServeMux()
		mux.Handle("/api/", http.StripPrefix("/api", bal))
		g := serveGateway(t, bal, mux)
		r := g.mustDo(t, http.MethodGet, "/api/x%2Fy?z=1", "strip", nil, nil)
		if r.status != http.StatusOK {
			t.Fatalf("status %d", r.status)
		}
		if got := up.get(t, "strip").uri; got != "/base/x%2Fy?z=1" {
			t.Errorf("backend saw %q; want /base/x%%2Fy?z=1", got)
		}
	})

	t.Run("retry", func(t *testing.T) {
		t.Parallel()
		pool, _ := poolOf(t, refusingURL(t)+"/dead?d=1", up.url+"/base")
		g := startGateway(t, pool, lb.RoundRobin())
		r := g.mustDo(t, http.MethodGet, "/x%2Fy?y=1", "retried path", nil, nil)
		if r.status != http.StatusOK {
			t.Fatalf("status %d", r.status)
		}
		if got := up.get(t, "retried path").uri; got != "/base/x%2Fy?y=1" {
			t.Errorf("retried request: backend saw %q; want /base/x%%2Fy?y=1", got)
		}
	})
}

// TestDefaultTransportReusesConnections: the default transport keeps
// enough idle connections per backend that concurrent clients do not make
// it dial anew for every request (Go's default keeps 2).
func TestDefaultTransportReusesConnections(t *testing.T) {
	t.Parallel()
	var dials atomic.Int64
	up := startUpstream(t, "a", nil, func(s *http.Server) {
		s.ConnState = func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				dials.Add(1)
			}
		}
	})
	pool, _ := poolOf(t, up.url)
	g := startGateway(t, pool, lb.RoundRobin())
	const clients = 16
	counts := spread(t, g, clients, 25, nil)
	if counts["a"] != clients*25 {
		t.Fatalf("served %v", counts)
	}
	if n := dials.Load(); n > 2*clients {
		t.Errorf("%d connections to the backend for %d requests from %d clients; want at most %d",
			n, clients*25, clients, 2*clients)
	}
}

// TestOnlyPoolMembersAreDialed: whatever the request line, Host or path
// say, the balancer dials only its backends (reliability.md S4). The
// transport refuses, without dialing, any other address.
func TestOnlyPoolMembersAreDialed(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, "a", nil)
	allowed := hostPortOf(up.url)
	var (
		mu     sync.Mutex
		dialed []string
	)
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dialed = append(dialed, addr)
		mu.Unlock()
		if addr != allowed {
			return nil, fmt.Errorf("test refuses to dial %s", addr)
		}
		return d.DialContext(ctx, network, addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	pool, _ := poolOf(t, up.url+"/base")
	g := startGateway(t, pool, lb.RoundRobin(), lb.WithTransport(tr))
	for i, req := range []string{
		"GET http://169.254.169.254/latest/meta-data HTTP/1.1\r\nHost: 169.254.169.254\r\n",
		"GET //169.254.169.254/x HTTP/1.1\r\nHost: 169.254.169.254\r\n",
		"GET /x HTTP/1.1\r\nHost: 10.0.0.1:22\r\n",
		"GET /x@169.254.169.254/ HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Host: 169.254.169.254\r\n",
	} {
		id := fmt.Sprint("ssrf", i)
		resp := rawhttp.Do(t, g.srv.Listener.Addr().String(), req+reqIDHeader+": "+id+"\r\nConnection: close\r\n\r\n")
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%q: status %d; want 200 from the pool's backend", req, resp.StatusCode)
			continue
		}
		s := up.get(t, id)
		if s.host != allowed || !strings.HasPrefix(s.uri, "/base/") {
			t.Errorf("%q: backend saw Host %q, URI %q; want Host %s and a URI under /base/", req, s.host, s.uri, allowed)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, a := range dialed {
		if a != allowed {
			t.Errorf("balancer dialed %s, not a pool member", a)
		}
	}
}
