package lb_test

// Proxy tests of protocol upgrades (websocket-style): the upgraded
// connection passes both ways, a wrong protocol is refused, and a handshake
// is never retried.

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tinylb/lb"
)

// hasToken reports whether a comma-separated header has token.
func hasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// upgrader answers a websocket-style upgrade with 101 and protocol proto,
// greets the client, then echoes each line it gets until the connection
// closes. Other requests get the default answer.
func upgrader(name, proto string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !hasToken(r.Header, "Connection", "upgrade") || !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			answerName(w, r, name)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", proto)
		fmt.Fprintf(brw, "hello from %s\n", name)
		brw.Flush()
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			brw.WriteString("echo: " + line)
			brw.Flush()
		}
	}
}

// dialUpgrade sends an upgrade request to g over a raw connection and
// reads the answer's head.
func dialUpgrade(t *testing.T, g *gateway) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", g.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: chat.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n%s: ws\r\n\r\n", reqIDHeader)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the upgrade answer: %v", err)
	}
	return conn, br, resp
}

// TestUpgrade: a websocket-style upgrade passes through both ways; the
// connection counts as active until it closes.
func TestUpgrade(t *testing.T) {
	t.Parallel()
	a := startUpstream(t, "a", upgrader("a", "websocket"))
	b := startUpstream(t, "b", upgrader("b", "websocket"))
	pool, bes := poolOf(t, a.url, b.url)
	g := startGateway(t, pool, lb.LeastConn())

	conn, br, resp := dialUpgrade(t, g)
	if resp.StatusCode != http.StatusSwitchingProtocols || !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		t.Fatalf("answer %d, Upgrade %q; want 101 websocket", resp.StatusCode, resp.Header.Get("Upgrade"))
	}
	greeting, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	var name string
	if _, err := fmt.Sscanf(greeting, "hello from %s\n", &name); err != nil || (name != "a" && name != "b") {
		t.Fatalf("greeting %q", greeting)
	}
	idx := map[string]int{"a": 0, "b": 1}[name]
	for i := range 3 {
		fmt.Fprintf(conn, "ping %d\n", i)
		line, err := br.ReadString('\n')
		if want := fmt.Sprintf("echo: ping %d\n", i); err != nil || line != want {
			t.Fatalf("echo %q, %v; want %q", line, err, want)
		}
	}
	if n := bes[idx].Active(); n != 1 {
		t.Errorf("%s.Active() = %d with an upgraded connection open; want 1", name, n)
	}
	if n := bes[1-idx].Active(); n != 0 {
		t.Errorf("other backend Active() = %d; want 0", n)
	}
	// Least connections counts the open connection.
	for range 3 {
		if got := g.served(t, nil); got == name {
			t.Errorf("least connections sent a request to %s, busy with an upgraded connection", name)
		}
		eventually(t, "other backend idle", func() bool { return bes[1-idx].Active() == 0 })
	}
	conn.Close()
	eventually(t, "upgraded connection no longer counted after close", func() bool { return bes[idx].Active() == 0 })
}

// TestUpgradeWrongProtocol: a backend switching to another protocol than
// the one asked for gets the client a 502, and the attempt is settled.
func TestUpgradeWrongProtocol(t *testing.T) {
	t.Parallel()
	a := startUpstream(t, "a", upgrader("a", "h2c"))
	other := startUpstream(t, "other", upgrader("other", "websocket"))
	pool, bes := poolOf(t, a.url, other.url)
	g := startGateway(t, pool, lb.RoundRobin())
	_, _, resp := dialUpgrade(t, g)
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("answer %d; want 502", resp.StatusCode)
	}
	if n := other.hits("ws"); n != 0 {
		t.Errorf("the upgrade was sent again to another backend (%d times)", n)
	}
	for _, be := range bes {
		eventually(t, "in-flight counts back to 0", func() bool { return be.Active() == 0 })
	}
}

// TestUpgradeNotRetried: a handshake that reached a backend is never sent
// again.
func TestUpgradeNotRetried(t *testing.T) {
	t.Parallel()
	bad := startUpstream(t, "bad", hangup)
	other := startUpstream(t, "other", upgrader("other", "websocket"))
	pool, _ := poolOf(t, bad.url, other.url)
	g := startGateway(t, pool, lb.RoundRobin())
	_, _, resp := dialUpgrade(t, g)
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("answer %d; want 502", resp.StatusCode)
	}
	if bad.hits("ws") != 1 || other.hits("ws") != 0 {
		t.Errorf("bad saw the handshake %d times, other %d; want 1 and 0", bad.hits("ws"), other.hits("ws"))
	}
}
