package reliability

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
	"github.com/tinylb/lb/internal/faultkit"
)

// wsConn is a client WebSocket connection through the front (raw bytes
// after the handshake: the balancer tunnels them).
type wsConn struct {
	net.Conn
	br   *bufio.Reader
	resp *http.Response
}

const wsKey = "dGhlIHNhbXBsZSBub25jZQ=="

// dialWS sends a handshake (extra headers in head) and reads the answer.
func dialWS(t *testing.T, addr, id, head string) *wsConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if head == "" {
		head = "Sec-WebSocket-Key: " + wsKey + "\r\n"
	}
	fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nX-Req-Id: %s\r\n%s\r\n", id, head)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("handshake %s: %v", id, err)
	}
	return &wsConn{Conn: c, br: br, resp: resp}
}

func (w *wsConn) echo(t *testing.T, msg string) {
	t.Helper()
	if _, err := io.WriteString(w, msg+"\n"); err != nil {
		t.Fatalf("write: %v", err)
	}
	line, err := w.br.ReadString('\n')
	if err != nil || line != msg+"\n" {
		t.Fatalf("echo of %q: %q, %v", msg, line, err)
	}
}

// closedWithin reports whether reading w ends (EOF or error) within d.
func (w *wsConn) closedWithin(d time.Duration) bool {
	w.SetReadDeadline(time.Now().Add(d))
	_, err := w.br.ReadByte()
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

// F16: WebSocket faults. A close on either side closes the other within
// 1 s; Balancer.Close and removing the backend let open tunnels finish
// (as documented: requests in flight run to completion) while new
// upgrades go elsewhere or get 503; a handshake that was sent is never
// retried; an open tunnel counts as in flight (least_conn).
func TestF16_WebSocketFaults(t *testing.T) {
	t.Run("close propagates", func(t *testing.T) {
		e := newEnv(t, envConfig{n: 1})
		b := e.backends[0]
		ws := dialWS(t, e.front.Addr, "ws1", "")
		if ws.resp.StatusCode != 101 {
			t.Fatalf("status %d", ws.resp.StatusCode)
		}
		ws.echo(t, "hello")
		if b.WebSockets() != 1 || e.members[0].Active() != 1 {
			t.Errorf("F16: open tunnel: backend sees %d, Active %d; want 1 and 1", b.WebSockets(), e.members[0].Active())
		}
		ws.Close()
		mustWait(t, time.Second, "backend side closed", func() bool { return b.WebSockets() == 0 })
		mustWait(t, time.Second, "tunnel settled", func() bool { return e.members[0].Active() == 0 })

		ws = dialWS(t, e.front.Addr, "ws2", "")
		ws.echo(t, "again")
		b.CloseWebSockets()
		if !ws.closedWithin(time.Second) {
			t.Errorf("F16: backend closed the tunnel; the client still open after 1 s")
		}
		// ReverseProxy (Go 1.26) relays the backend's FIN as a half-close
		// and keeps the tunnel until the client closes its side too.
		ws.Close()
		mustWait(t, time.Second, "tunnel settled", func() bool { return e.members[0].Active() == 0 })
	})
	t.Run("removal and close drain", func(t *testing.T) {
		e := newEnv(t, envConfig{n: 2, strategy: lb.LeastConn()})
		ws := dialWS(t, e.front.Addr, "ws-drain", "")
		if ws.resp.StatusCode != 101 {
			t.Fatalf("status %d", ws.resp.StatusCode)
		}
		name := ws.resp.Header.Get(faultkit.HeaderBackend)
		var owner *faultkit.Backend
		for _, b := range e.backends {
			if b.Name == name {
				owner = b
			}
		}
		if err := e.pool.Remove(owner.URL); err != nil {
			t.Fatal(err)
		}
		ws.echo(t, "still here after Remove")
		ws2 := dialWS(t, e.front.Addr, "ws-after-remove", "")
		if ws2.resp.StatusCode != 101 || ws2.resp.Header.Get(faultkit.HeaderBackend) == name {
			t.Errorf("F16: upgrade after Remove: %d from %s", ws2.resp.StatusCode, ws2.resp.Header.Get(faultkit.HeaderBackend))
		}
		ws2.Close()
		e.bal.Close()
		ws.echo(t, "still here after Close")
		ws3 := dialWS(t, e.front.Addr, "ws-after-close", "")
		if ws3.resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("F16: upgrade after Close: %d, want 503", ws3.resp.StatusCode)
		}
		ws.Close()
	})
	t.Run("handshake not retried once sent", func(t *testing.T) {
		// Passive checks off, so that a stays in rotation after its
		// first reset and every other handshake is sent to it.
		e := newEnv(t, envConfig{n: 2, opts: []lb.Option{lb.WithPassiveHealth(health.Passive{MaxFails: -1})}})
		a, b := e.backends[0], e.backends[1]
		a.SetFault(faultkit.Fault{Kind: faultkit.ResetAfterRead})
		for i := range 4 {
			ws := dialWS(t, e.front.Addr, fmt.Sprint("ws-reset-", i), "")
			if ws.resp.StatusCode == 101 {
				if ws.resp.Header.Get(faultkit.HeaderBackend) != "b" {
					t.Errorf("F16: 101 from %s", ws.resp.Header.Get(faultkit.HeaderBackend))
				}
				ws.Close()
				continue
			}
			if ws.resp.StatusCode != http.StatusBadGateway {
				t.Errorf("F16: handshake reset by a: %d, want 502", ws.resp.StatusCode)
			}
		}
		// Half of the handshakes went to a first and were not retried.
		if got := b.Requests(); got > 2 {
			t.Errorf("F16: b got %d handshakes of 4; the ones sent to a were retried", got)
		}
		// A refused dial (nothing sent) is retried.
		a.Kill()
		ws := dialWS(t, e.front.Addr, "ws-refused", "")
		if ws.resp.StatusCode != 101 {
			t.Errorf("F16: handshake after a refused dial: %d, want 101 from b", ws.resp.StatusCode)
		}
		ws.Close()
	})
	t.Run("open tunnels count in least_conn", func(t *testing.T) {
		e := newEnv(t, envConfig{n: 2, strategy: lb.LeastConn()})
		var socks []*wsConn
		for i := range 4 {
			socks = append(socks, dialWS(t, e.front.Addr, fmt.Sprint("ws-lc-", i), ""))
		}
		if e.backends[0].WebSockets() != 2 || e.backends[1].WebSockets() != 2 {
			t.Errorf("F16: least_conn put %d and %d tunnels on the backends, want 2 and 2", e.backends[0].WebSockets(), e.backends[1].WebSockets())
		}
		for _, s := range socks {
			s.Close()
		}
	})
}

// S10: WebSocket validation. Messages pass intact; a handshake without
// Sec-WebSocket-Key reaches the backend, whose 400 comes back (the
// balancer leaves handshake validation to the backend); a 101 switching to
// another protocol, or without Upgrade, gives 502; an upgrade answered
// with 200 never becomes a tunnel.
func TestS10_WebSocketValidation(t *testing.T) {
	e := newEnv(t, envConfig{n: 1})
	b := e.backends[0]
	ws := dialWS(t, e.front.Addr, "s10", "")
	if ws.resp.StatusCode != 101 || ws.resp.Header.Get("Sec-Websocket-Accept") != faultkit.WebSocketAccept(wsKey) {
		t.Fatalf("status %d accept %q", ws.resp.StatusCode, ws.resp.Header.Get("Sec-Websocket-Accept"))
	}
	n := scale(1000, 10000)
	for i := range n {
		ws.echo(t, fmt.Sprintf("message %d %s", i, strings.Repeat("x", i%200)))
	}
	ws.Close()

	if ws := dialWS(t, e.front.Addr, "s10-nokey", "X-No-Key: 1\r\n"); ws.resp.StatusCode != 400 {
		t.Errorf("S10: handshake without a key: %d, want the backend's 400", ws.resp.StatusCode)
	}
	for _, up := range []string{"h2c", "-"} {
		b.SetBehavior(faultkit.Behavior{Upgrade: up})
		if ws := dialWS(t, e.front.Addr, "s10-bad-"+up, ""); ws.resp.StatusCode != http.StatusBadGateway {
			t.Errorf("S10: backend 101 with Upgrade %q: %d, want 502", up, ws.resp.StatusCode)
		}
	}
	mustWait(t, time.Second, "rejected tunnels closed at the backend", func() bool { return b.WebSockets() == 0 })
	b.SetBehavior(faultkit.Behavior{RefuseUpgrade: true})
	ws = dialWS(t, e.front.Addr, "s10-200", "")
	if ws.resp.StatusCode != 200 {
		t.Fatalf("status %d", ws.resp.StatusCode)
	}
	io.Copy(io.Discard, ws.resp.Body)
	// The connection is still HTTP: the next bytes are parsed as a request,
	// not tunneled.
	fmt.Fprintf(ws, "GET /next HTTP/1.1\r\nHost: x\r\nX-Req-Id: s10-next\r\n\r\n")
	resp, err := http.ReadResponse(ws.br, nil)
	if err != nil || resp.StatusCode != 200 || resp.Header.Get(faultkit.HeaderID) != "s10-next" {
		t.Errorf("S10: after a refused upgrade the connection is not plain HTTP: %v %v", resp, err)
	}
	if b.Path("/next") != 1 {
		t.Errorf("S10: /next reached the backend %d times", b.Path("/next"))
	}
}
