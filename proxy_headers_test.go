package lb_test

// Proxy tests of headers: X-Forwarded-* set by the balancer, the
// Connection header, and hop-by-hop headers stripped both ways.

import (
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/internal/rawhttp"
)

// TestForwardingHeaders: the backend sees X-Forwarded-* set by the
// balancer from the connection, whatever the client sent, and its own
// host:port as Host.
func TestForwardingHeaders(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, "a", nil)
	pool, _ := poolOf(t, up.url)
	g := startGateway(t, pool, lb.RoundRobin())

	for i, conn := range []string{"", "X-Forwarded-For, X-Forwarded-Host, X-Forwarded-Proto, X-Real-IP, Forwarded"} {
		id := fmt.Sprint("fwd", i)
		req, _ := http.NewRequest(http.MethodGet, g.url+"/x", nil)
		req.Host = "shop.example"
		req.Header.Set(reqIDHeader, id)
		req.Header.Add("X-Forwarded-For", "6.6.6.6")
		req.Header.Add("X-Forwarded-For", "7.7.7.7, 8.8.8.8")
		req.Header.Set("X-Forwarded-Host", "evil.example")
		req.Header.Set("X-Forwarded-Proto", "https")
		req.Header.Set("Forwarded", "for=6.6.6.6;proto=https")
		req.Header.Set("X-Real-Ip", "6.6.6.6")
		if conn != "" {
			req.Header.Set("Connection", conn)
		}
		if r := g.send(t, req); r.status != http.StatusOK {
			t.Fatalf("status %d", r.status)
		}
		s := up.get(t, id)
		for _, c := range []struct{ name, want string }{
			{"X-Forwarded-For", "127.0.0.1"},
			{"X-Forwarded-Host", "shop.example"},
			{"X-Forwarded-Proto", "http"},
		} {
			if got := s.header.Values(c.name); len(got) != 1 || got[0] != c.want {
				t.Errorf("Connection %q: backend saw %s %q; want only %q", conn, c.name, got, c.want)
			}
		}
		for _, h := range []string{"Forwarded", "X-Real-Ip"} {
			if got := s.header.Values(h); len(got) != 0 {
				t.Errorf("Connection %q: backend saw the client's %s %q", conn, h, got)
			}
		}
		if want := hostPortOf(up.url); s.host != want {
			t.Errorf("backend saw Host %q; want its own %q", s.host, want)
		}
	}
}

// TestConnectionHeaderEmptyFirstLine: a Connection header whose first line
// is empty still cannot remove the balancer's headers (golang/go#46313).
func TestConnectionHeaderEmptyFirstLine(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, "a", nil)
	pool, _ := poolOf(t, up.url)
	g := startGateway(t, pool, lb.RoundRobin())
	resp := rawhttp.Do(t, g.srv.Listener.Addr().String(), "GET /x HTTP/1.1\r\nHost: shop.example\r\nConnection: \r\n"+
		"Connection: X-Forwarded-For, X-Forwarded-Host, X-Hop\r\nX-Hop: 1\r\n"+reqIDHeader+": raw\r\n\r\n")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	s := up.get(t, "raw")
	if got := s.header.Values("X-Forwarded-For"); len(got) != 1 || got[0] != "127.0.0.1" {
		t.Errorf("X-Forwarded-For %q; want only 127.0.0.1", got)
	}
	if got := s.header.Get("X-Forwarded-Host"); got != "shop.example" {
		t.Errorf("X-Forwarded-Host %q; want shop.example", got)
	}
	if got := s.header.Values("X-Hop"); len(got) != 0 {
		t.Errorf("X-Hop %q crossed the balancer", got)
	}
}

// TestHopByHopHeadersStripped: hop-by-hop headers, and those named in
// Connection, cross the balancer in neither direction; TE: trailers does.
func TestHopByHopHeadersStripped(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, "a", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Connection", "X-Resp-Hop")
		h.Set("X-Resp-Hop", "1")
		h.Set("Keep-Alive", "timeout=5")
		h.Set("Proxy-Connection", "keep-alive")
		h.Set("Upgrade", "foo")
		h.Set("X-End-To-End", "kept")
		io.WriteString(w, "ok")
	})
	pool, _ := poolOf(t, up.url)
	g := startGateway(t, pool, lb.RoundRobin())

	respHop := []string{"Connection", "X-Resp-Hop", "Keep-Alive", "Proxy-Connection", "Upgrade"}
	// The backend really sends them.
	direct, err := g.c.Get(up.url)
	if err != nil {
		t.Fatal(err)
	}
	direct.Body.Close()
	for _, h := range respHop {
		if direct.Header.Get(h) == "" {
			t.Fatalf("the backend does not send %s; the test proves nothing", h)
		}
	}

	req, _ := http.NewRequest(http.MethodGet, g.url+"/", nil)
	req.Header.Set(reqIDHeader, "hop")
	req.Header.Set("Connection", "keep-alive, X-Hop-A, x-hop-b")
	req.Header.Set("X-Hop-A", "1")
	req.Header.Set("X-Hop-B", "2")
	req.Header.Set("Keep-Alive", "timeout=5")
	req.Header.Set("Proxy-Connection", "keep-alive")
	req.Header.Set("Te", "trailers, deflate")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("X-End-To-End", "kept")
	r := g.send(t, req)
	if r.status != http.StatusOK {
		t.Fatalf("status %d", r.status)
	}
	s := up.get(t, "hop")
	for _, h := range []string{"Connection", "X-Hop-A", "X-Hop-B", "Keep-Alive", "Proxy-Connection", "Upgrade"} {
		if v := s.header.Values(h); len(v) != 0 {
			t.Errorf("request header %s: %q crossed the balancer", h, v)
		}
	}
	if got := s.header.Values("Te"); len(got) != 1 || got[0] != "trailers" {
		t.Errorf("backend saw TE %q; want only trailers", got)
	}
	if got := s.header.Get("X-End-To-End"); got != "kept" {
		t.Errorf("end-to-end request header lost: %q", got)
	}
	for _, h := range respHop {
		if v := r.header.Values(h); len(v) != 0 {
			t.Errorf("response header %s: %q crossed the balancer", h, v)
		}
	}
	if got := r.header.Get("X-End-To-End"); got != "kept" {
		t.Errorf("end-to-end response header lost: %q", got)
	}
}
