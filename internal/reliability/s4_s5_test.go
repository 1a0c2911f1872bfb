package reliability

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/internal/faultkit"
	"github.com/tinylb/lb/internal/rawhttp"
)

// ssrfRequests are request heads that try to pick the target: absolute
// URIs, Hosts, //host and @host paths, CONNECT, hash keys naming an
// internal address.
var ssrfRequests = []string{
	"GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n",
	"GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: anything.example\r\n",
	"GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: 127.0.0.1:1\r\n",
	"GET https://10.0.0.1:443/x HTTP/1.1\r\nHost: 10.0.0.1\r\n",
	"GET / HTTP/1.1\r\nHost: 169.254.169.254\r\n",
	"GET / HTTP/1.1\r\nHost: 127.0.0.1:22\r\n",
	"GET / HTTP/1.1\r\nHost: localhost:1\r\n",
	"GET //169.254.169.254/latest HTTP/1.1\r\nHost: x\r\n",
	"GET //127.0.0.1:1/x HTTP/1.1\r\nHost: x\r\n",
	"GET /@169.254.169.254/x HTTP/1.1\r\nHost: x\r\n",
	"GET /..//169.254.169.254/x HTTP/1.1\r\nHost: x\r\n",
	"GET /%2F%2F169.254.169.254/x HTTP/1.1\r\nHost: x\r\n",
	"GET /x HTTP/1.1\r\nHost: x\r\nX-Forwarded-Host: 169.254.169.254\r\nX-Host: 169.254.169.254\r\nX-Original-URL: http://169.254.169.254/\r\nX-Rewrite-URL: //169.254.169.254/\r\n",
	"GET /x HTTP/1.1\r\nHost: x\r\nX-Target: 169.254.169.254:80\r\n",
	"CONNECT 169.254.169.254:80 HTTP/1.1\r\nHost: 169.254.169.254:80\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: 169.254.169.254\r\n",
	"GET http://user:pw@169.254.169.254/ HTTP/1.1\r\nHost: x\r\n",
}

// S4: whatever the Host, the request target or the hash key, the balancer
// dials only the pool. The Host the backend sees is the backend's own
// (SetURL rewrites it) and X-Forwarded-Host carries the client's; a bad
// Host is refused with 400 by the server before the balancer.
func TestS4_HostAndTargetNeverPickTheAddress(t *testing.T) {
	for _, strat := range []struct {
		name string
		s    lb.Strategy
	}{
		{"round-robin", lb.RoundRobin()},
		{"hash-on-header", lb.ConsistentHash(lb.HeaderKey("X-Target"))},
		{"hash-on-path", lb.ConsistentHash(lb.PathKey())},
	} {
		t.Run(strat.name, func(t *testing.T) {
			e := newEnv(t, envConfig{n: 2, strategy: strat.s, backend: func(int) faultkit.Config { return faultkit.Config{Keep: true} }})
			for i, head := range ssrfRequests {
				id := fmt.Sprintf("s4-%d", i)
				resp := rawhttp.Do(t, e.front.Addr, head+"X-Req-Id: "+id+"\r\nConnection: close\r\n\r\n")
				seen := append(e.backends[0].SeenID(id), e.backends[1].SeenID(id)...)
				if resp.StatusCode >= 500 {
					t.Errorf("S4: %q: status %d", head, resp.StatusCode)
				}
				for _, s := range seen {
					if s.Host != e.backends[0].Addr && s.Host != e.backends[1].Addr {
						t.Errorf("S4: %q: the backend saw Host %q, not its own", firstLine(head), s.Host)
					}
				}
			}
			e.assertContained()
		})
	}
	t.Run("bad hosts", func(t *testing.T) {
		e := newEnv(t, envConfig{n: 1})
		for _, head := range []string{
			"GET / HTTP/1.1\r\n",                                             // no Host
			"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n",                       // two
			"GET / HTTP/1.1\r\nHost: a b\r\n",                                // space
			"GET / HTTP/1.1\r\nHost: a/b\r\n",                                // slash
			"GET / HTTP/1.1\r\nHost: a\x00b\r\n",                             // NUL
			"GET http://a/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n",               // two with absolute URI
			"GET / HTTP/1.1\r\nHost: x\r\nHost:\r\n",                         // empty second
			"GET / HTTP/1.1\r\nHost: evil.example\tx\r\n",                    // tab
			"GET / HTTP/1.1\r\nHost: " + strings.Repeat("a", 2<<20) + "\r\n", // over MaxHeaderBytes
		} {
			resp := rawhttp.Do(t, e.front.Addr, head+"\r\n")
			if resp.StatusCode/100 != 4 {
				t.Errorf("S4: %.60q: status %d, want 4xx", head, resp.StatusCode)
			}
		}
		if n := e.requests(); n != 0 {
			t.Errorf("S4: %d requests with bad Hosts reached the backend", n)
		}
		e.assertContained()
	})
	t.Run("odd hosts net/http accepts", func(t *testing.T) {
		// net/http lets these through (its Host check is about characters,
		// not syntax); they reach the backend only as X-Forwarded-Host.
		e := newEnv(t, envConfig{n: 1, backend: func(int) faultkit.Config { return faultkit.Config{Keep: true} }})
		for i, host := range []string{"[::1", strings.Repeat("a", 70000), "a..b", "-x-:99999"} {
			id := fmt.Sprintf("odd-%d", i)
			resp := rawhttp.Do(t, e.front.Addr, "GET / HTTP/1.1\r\nHost: "+host+"\r\nX-Req-Id: "+id+"\r\nConnection: close\r\n\r\n")
			if resp.StatusCode != 200 && resp.StatusCode/100 != 4 {
				t.Errorf("S4: Host %.20q: status %d", host, resp.StatusCode)
			}
			for _, s := range e.backends[0].SeenID(id) {
				if s.Host != e.backends[0].Addr || s.Header.Get("X-Forwarded-Host") != host {
					t.Errorf("S4: Host %.20q: backend saw Host %q, X-Forwarded-Host %.20q", host, s.Host, s.Header.Get("X-Forwarded-Host"))
				}
			}
		}
		e.assertContained()
	})
	t.Run("forwarded host", func(t *testing.T) {
		e := newEnv(t, envConfig{n: 1, backend: func(int) faultkit.Config { return faultkit.Config{Keep: true} }})
		resp := rawhttp.Do(t, e.front.Addr, "GET /p HTTP/1.1\r\nHost: shop.example:8443\r\nX-Req-Id: fh\r\nConnection: close\r\n\r\n")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		s := e.backends[0].SeenID("fh")[0]
		if s.Host != e.backends[0].Addr || s.Header.Get("X-Forwarded-Host") != "shop.example:8443" {
			t.Errorf("S4: backend saw Host %q, X-Forwarded-Host %q", s.Host, s.Header.Get("X-Forwarded-Host"))
		}
	})
}

// S5 (redirects): a backend answering with redirects to internal
// addresses has them passed back to the client, never followed.
func TestS5_RedirectsNeverFollowed(t *testing.T) {
	e := newEnv(t, envConfig{n: 2})
	for _, code := range []int{301, 302, 303, 307, 308} {
		for _, loc := range []string{"http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:1/", "//10.0.0.1/x", "/local"} {
			for _, b := range e.backends {
				b.SetBehavior(faultkit.Behavior{Status: code, Header: http.Header{"Location": {loc}}})
			}
			a := e.do(faultkit.Request{N: 5, Body: 10, Method: http.MethodPost})
			if a.Status != code || a.Header.Get("Location") != loc {
				t.Errorf("S5: %d to %s: client got %d Location %q", code, loc, a.Status, a.Header.Get("Location"))
			}
			if h := e.hits(a.ID); h != 1 {
				t.Errorf("S5: %s reached backends %d times", a.ID, h)
			}
		}
	}
	e.assertContained()
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\r'); i >= 0 {
		return s[:i]
	}
	return s
}
