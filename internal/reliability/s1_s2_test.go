package reliability

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/textproto"
	"strings"
	"testing"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/internal/faultkit"
	"github.com/tinylb/lb/internal/rawhttp"
)

// hopHeaders are the hop-by-hop headers of RFC 9110 §7.6.1 and the ones
// proxies treat so by custom.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// hopViolations lists the hop-by-hop headers in h, and the headers named
// in named, that crossed the balancer. A "Te: trailers" is allowed.
func hopViolations(h http.Header, named ...string) []string {
	var out []string
	for _, k := range hopHeaders {
		v, ok := h[k]
		if !ok {
			continue
		}
		if k == "Te" && len(v) == 1 && strings.EqualFold(v[0], "trailers") {
			continue
		}
		out = append(out, fmt.Sprintf("%s: %q", k, v))
	}
	for _, k := range named {
		if v, ok := h[textproto.CanonicalMIMEHeaderKey(k)]; ok {
			out = append(out, fmt.Sprintf("%s: %q (named in Connection)", k, v))
		}
	}
	return out
}

// S1: hop-by-hop headers, and the headers named in Connection, cross the
// balancer in neither direction, on final and on 1xx responses.
func TestS1_HopByHopBothWays(t *testing.T) {
	t.Run("request", func(t *testing.T) {
		e := newEnv(t, envConfig{n: 1, backend: func(int) faultkit.Config { return faultkit.Config{Keep: true} }})
		for i, raw := range []string{
			"Connection: keep-alive, X-Custom, X-Other\r\nX-Custom: 1\r\nX-Other: 2\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTe: trailers, gzip\r\nUpgrade: foo/1\r\nProxy-Authorization: Basic eDp5\r\nTrailer: X-T\r\n",
			"Connection: X-Custom\r\nConnection: X-Other\r\nX-Custom: 1\r\nX-Other: 2\r\nTe: gzip\r\n",
			"Connection:\r\nConnection: X-Custom,,X-Other\r\nX-Custom: 1\r\nX-Other: 2\r\n",
			"Connection: ,X-Custom , X-Other\r\nX-Custom: 1\r\nX-Other: 2\r\nUpgrade: websocket\r\n",
		} {
			id := fmt.Sprintf("s1-req-%d", i)
			resp := rawhttp.Do(t, e.front.Addr, "GET /?n=1 HTTP/1.1\r\nHost: x\r\nX-Req-Id: "+id+"\r\n"+raw+"\r\n")
			if resp.StatusCode != 200 {
				t.Errorf("%s: status %d", id, resp.StatusCode)
				continue
			}
			seen := e.backends[0].SeenID(id)
			if len(seen) != 1 {
				t.Fatalf("%s: backend saw it %d times", id, len(seen))
			}
			if v := hopViolations(seen[0].Header, "X-Custom", "X-Other"); len(v) > 0 {
				t.Errorf("S1: %s: the backend got %v", id, v)
			}
		}
	})
	t.Run("response", func(t *testing.T) {
		e := newEnv(t, envConfig{n: 1})
		e.backends[0].SetBehavior(faultkit.Behavior{Header: http.Header{
			"Connection":         {"X-Resp-Hop"},
			"X-Resp-Hop":         {"1"},
			"Keep-Alive":         {"timeout=1"},
			"Proxy-Connection":   {"keep-alive"},
			"Proxy-Authenticate": {"Basic"},
			"Upgrade":            {"foo/1"},
			"Te":                 {"gzip"},
		}})
		a := e.do(faultkit.Request{N: 10})
		if !a.OK() {
			t.Fatalf("%+v", a)
		}
		h := a.Header.Clone()
		h.Del("Connection") // the front server's own, if any, is checked below
		if v := hopViolations(h, "X-Resp-Hop"); len(v) > 0 {
			t.Errorf("S1: the client got %v", v)
		}
		if c := a.Header.Get("Connection"); c != "" && !strings.EqualFold(c, "close") && !strings.EqualFold(c, "keep-alive") {
			t.Errorf("S1: the client got Connection: %q", c)
		}
	})
	t.Run("1xx", func(t *testing.T) {
		e := newEnv(t, envConfig{n: 1, backend: func(int) faultkit.Config {
			return faultkit.Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				h := w.Header()
				h.Set("Link", "</style.css>; rel=preload")
				h.Set("Connection", "X-Hint-Hop")
				h.Set("X-Hint-Hop", "1")
				h.Set("Keep-Alive", "timeout=1")
				h.Set("Proxy-Connection", "keep-alive")
				w.WriteHeader(http.StatusEarlyHints)
				clear(h)
				h.Set(faultkit.HeaderBackend, "a")
				fmt.Fprint(w, "ok")
			})}
		}})
		var got []textproto.MIMEHeader
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
			Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
				got = append(got, h)
				return nil
			},
		})
		req, _ := http.NewRequestWithContext(ctx, "GET", e.front.URL+"/", nil)
		resp, err := e.client.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if len(got) != 1 || got[0].Get("Link") == "" {
			t.Fatalf("1xx responses seen by the client: %v", got)
		}
		if v := hopViolations(http.Header(got[0]), "X-Hint-Hop"); len(v) > 0 {
			t.Errorf("BUG(S1): hop-by-hop headers of a 103 response reached the client: %v (golang/go#81319: ReverseProxy copies 1xx headers as they are)", v)
		}
		if v := hopViolations(resp.Header, "X-Hint-Hop"); len(v) > 0 {
			t.Errorf("S1: headers of the 103 leaked into the final response: %v", v)
		}
	})
}

// S2: a client listing the forwarding headers in Connection (the
// CVE-2021-33197 trick), with or without an empty first Connection line,
// cannot delete or replace the headers the balancer sets.
func TestS2_ConnectionHeaderAbuse(t *testing.T) {
	for _, trust := range []bool{false, true} {
		t.Run(fmt.Sprintf("trusted=%v", trust), func(t *testing.T) {
			var opts []lb.Option
			wantXFF := "127.0.0.1"
			if trust {
				opts = append(opts, lb.WithTrustedProxies(netip.MustParsePrefix("127.0.0.0/8")))
				wantXFF = "1.2.3.4, 127.0.0.1"
			}
			e := newEnv(t, envConfig{n: 1, opts: opts, backend: func(int) faultkit.Config { return faultkit.Config{Keep: true} }})
			abuse := "X-Forwarded-For, X-Forwarded-Host, X-Forwarded-Proto, X-Real-IP, Forwarded"
			spoof := "X-Forwarded-For: 1.2.3.4\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\n"
			if trust {
				spoof += "X-Forwarded-Host: orig.example\r\nX-Forwarded-Proto: https\r\n"
			}
			for i, conn := range []string{
				"Connection: " + abuse + "\r\n",
				"Connection:\r\nConnection: " + abuse + "\r\n",
				"Connection: \r\nConnection: keep-alive\r\nConnection: " + abuse + "\r\n",
				"Connection: " + strings.ReplaceAll(abuse, ", ", "\r\nConnection: ") + "\r\n",
			} {
				id := fmt.Sprintf("s2-%v-%d", trust, i)
				resp := rawhttp.Do(t, e.front.Addr, "GET /?n=1 HTTP/1.1\r\nHost: victim.example\r\nX-Req-Id: "+id+"\r\n"+spoof+conn+"\r\n")
				if resp.StatusCode != 200 {
					t.Errorf("%s: status %d", id, resp.StatusCode)
					continue
				}
				seen := e.backends[0].SeenID(id)
				if len(seen) != 1 {
					t.Fatalf("%s: seen %d times", id, len(seen))
				}
				h := seen[0].Header
				wantHost, wantProto := "victim.example", "http"
				if trust {
					wantHost, wantProto = "orig.example", "https"
				}
				if got := strings.Join(h["X-Forwarded-For"], "|"); got != wantXFF {
					t.Errorf("S2: %s: X-Forwarded-For %q, want %q", id, got, wantXFF)
				}
				if got := strings.Join(h["X-Forwarded-Host"], "|"); got != wantHost {
					t.Errorf("S2: %s: X-Forwarded-Host %q, want %q", id, got, wantHost)
				}
				if got := strings.Join(h["X-Forwarded-Proto"], "|"); got != wantProto {
					t.Errorf("S2: %s: X-Forwarded-Proto %q, want %q", id, got, wantProto)
				}
				for _, k := range []string{"X-Real-Ip", "Forwarded", "Connection"} {
					if v, ok := h[k]; ok {
						t.Errorf("S2: %s: the backend got %s: %q", id, k, v)
					}
				}
			}
		})
	}
}
