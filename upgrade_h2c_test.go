package lb

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// h2c upgrade smuggling: a client's "Upgrade: h2c" must never reach a
// backend, which could switch the connection to HTTP/2 and give the client
// a tunnel past the balancer. The request goes on as a plain one, or as an
// upgrade to the other protocols it offers.

// h2cSettings is an HTTP2-Settings value, as the h2csmuggler tool sends it.
const h2cSettings = "AAMAAABkAARAAAAAAAIAAAAA"

// h2cCases are the ways a client may ask for h2c.
var h2cCases = []struct{ name, head string }{
	{"RFC form", "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: " + h2cSettings + "\r\n"},
	{"upper case", "Connection: UPGRADE, http2-settings\r\nUpgrade: H2C\r\nHTTP2-Settings: " + h2cSettings + "\r\n"},
	{"extra spaces", "Connection:   upgrade ,  HTTP2-Settings  \r\nUpgrade:    h2c   \r\nHTTP2-Settings: " + h2cSettings + "\r\n"},
	{"HTTP2-Settings not a connection option", "Connection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: " + h2cSettings + "\r\n"},
	{"two Upgrade lines", "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nUpgrade: H2c\r\nHTTP2-Settings: " + h2cSettings + "\r\n"},
	{"empty first Upgrade line", "Connection: Upgrade\r\nUpgrade: \r\nUpgrade: h2c\r\nHTTP2-Settings: " + h2cSettings + "\r\n"},
	{"with a version", "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c/1\r\nHTTP2-Settings: " + h2cSettings + "\r\n"},
	{"two Connection lines", "Connection: keep-alive\r\nConnection: upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: " + h2cSettings + "\r\n"},
}

// headerRecorder is a backend handler that records the headers of each
// request and answers 200 "plain".
type headerRecorder struct {
	mu   sync.Mutex // protects seen
	seen []http.Header
}

func (h *headerRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.seen = append(h.seen, r.Header.Clone())
	h.mu.Unlock()
	io.WriteString(w, "plain")
}

func (h *headerRecorder) last(t *testing.T) http.Header {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	require.NotEmpty(t, h.seen, "the backend got no request")
	return h.seen[len(h.seen)-1]
}

// rawExchange sends raw to addr on a new connection and reads the answer's
// head, and its body unless it is a 101; it returns the connection and a
// reader positioned after what was read.
func rawExchange(t *testing.T, addr, raw string) (*http.Response, string, net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(hangGuard))
	_, err = io.WriteString(c, raw)
	require.NoError(t, err)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp, "", c, br
	}
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body), c, br
}

// assertNoH2C checks that the headers a backend got carry no trace of an
// h2c upgrade.
func assertNoH2C(t *testing.T, h http.Header) {
	t.Helper()
	assert.False(t, offersH2C(h["Upgrade"]), "the backend got Upgrade %q", h["Upgrade"])
	assert.NotContains(t, h, "Http2-Settings", "the backend got HTTP2-Settings")
	assert.False(t, hasToken(h["Connection"], "http2-settings"), "the backend got Connection %q", h["Connection"])
}

// TestH2CUpgradeNotForwarded: whatever form it takes, an h2c upgrade
// reaches the backend as a plain request, with no Upgrade, Connection or
// HTTP2-Settings header, and the client gets the backend's 200; both paths
// send the backend the same headers. Before the fix the backend got
// "Upgrade: h2c" (and, when the client did not list it in Connection,
// HTTP2-Settings).
func TestH2CUpgradeNotForwarded(t *testing.T) {
	rec := new(headerRecorder)
	backend := httptest.NewServer(rec)
	t.Cleanup(backend.Close)
	addrs := make([]string, len(proxyPaths))
	for i, p := range proxyPaths {
		_, addrs[i] = startTunnelGateway(t, backend.URL, p.opts)
	}
	for _, c := range h2cCases {
		t.Run(c.name, func(t *testing.T) {
			seen := make([]http.Header, len(proxyPaths))
			for i, p := range proxyPaths {
				resp, body, _, _ := rawExchange(t, addrs[i], "GET / HTTP/1.1\r\nHost: x\r\n"+c.head+"\r\n")
				assert.Equal(t, http.StatusOK, resp.StatusCode, p.name)
				assert.Equal(t, "plain", body, p.name)
				seen[i] = rec.last(t)
				assertNoH2C(t, seen[i])
				assert.NotContains(t, seen[i], "Upgrade", p.name)
				assert.NotContains(t, seen[i], "Connection", p.name)
			}
			assert.Equal(t, seen[0], seen[1], "what the backend got on the two paths")
		})
	}
}

// TestH2CPathChoice: a request that offers h2c alone is a plain request,
// and takes the relay path; one that offers another protocol as well is an
// upgrade to it, on ReverseProxy's.
func TestH2CPathChoice(t *testing.T) {
	b := &Balancer{}
	for _, c := range []struct {
		conn    string
		upgrade []string
		relay   bool
		forward string // the Upgrade dropH2C leaves, when it changes it
	}{
		{"Upgrade", []string{"websocket"}, false, ""},
		{"Upgrade", nil, false, ""}, // as before: ReverseProxy finds no upgrade
		{"Upgrade, HTTP2-Settings", []string{"h2c"}, true, ""},
		{"upgrade", []string{" H2C "}, true, ""},
		{"upgrade", []string{"h2c/1", "H2c"}, true, ""},
		{"upgrade", []string{"h2c, websocket"}, false, "websocket"},
		{"upgrade", []string{"h2c", "websocket"}, false, "websocket"},
		{"upgrade", []string{"websocket,h2c, ,foo/2"}, false, "websocket, foo/2"},
		{"upgrade", []string{"h2cx"}, false, ""}, // not h2c
		{"keep-alive", []string{"h2c"}, true, ""},
	} {
		h := http.Header{"Connection": {c.conn}, "Upgrade": c.upgrade}
		assert.Equal(t, c.relay, b.relays(&http.Request{Header: h}), "Connection %q, Upgrade %q: relay", c.conn, c.upgrade)
		if offersH2C(c.upgrade) {
			assert.Equal(t, c.forward, withoutH2C(c.upgrade), "Upgrade %q without h2c", c.upgrade)
		}
	}
}

// TestH2CWithWebSocket: a client that offers h2c and websocket gets its
// websocket upgrade, and the backend sees only "Upgrade: websocket".
// Before the fix the backend got "h2c, websocket", or just "h2c" when the
// offers came on two lines (ReverseProxy forwards the first).
func TestH2CWithWebSocket(t *testing.T) {
	for _, p := range proxyPaths {
		for _, c := range []struct{ name, head string }{
			{"websocket alone", "Connection: Upgrade\r\nUpgrade: websocket\r\n"},
			{"one list", "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c, websocket\r\nHTTP2-Settings: " + h2cSettings + "\r\n"},
			{"websocket first", "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: websocket , H2C\r\nHTTP2-Settings: " + h2cSettings + "\r\n"},
			{"two lines", "Connection: Upgrade\r\nUpgrade: h2c\r\nUpgrade: websocket\r\nHTTP2-Settings: " + h2cSettings + "\r\n"},
		} {
			t.Run(p.name+"/"+c.name, func(t *testing.T) {
				seen := make(chan http.Header, 1)
				backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					seen <- r.Header.Clone()
					if r.Header.Get("Upgrade") != "websocket" || len(r.Header["Upgrade"]) != 1 {
						http.Error(w, "not a websocket upgrade", http.StatusBadRequest)
						return
					}
					conn, brw, err := http.NewResponseController(w).Hijack()
					if err != nil {
						return
					}
					defer conn.Close()
					brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
					brw.Flush()
					line, _ := brw.ReadString('\n')
					brw.WriteString("echo: " + line)
					brw.Flush()
				}))
				t.Cleanup(backend.Close)
				bal, addr := startTunnelGateway(t, backend.URL, p.opts)

				resp, body, conn, br := rawExchange(t, addr, "GET /ws HTTP/1.1\r\nHost: x\r\n"+c.head+"\r\n")
				var got http.Header
				select {
				case got = <-seen:
				default:
					t.Fatalf("the backend got no request; the client got %s %q", resp.Status, body)
				}
				assertNoH2C(t, got)
				assert.Equal(t, []string{"websocket"}, got["Upgrade"])
				require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode, "answer %q", body)
				assert.Equal(t, "websocket", resp.Header.Get("Upgrade"))
				_, err := io.WriteString(conn, "ping\n")
				require.NoError(t, err)
				line, err := br.ReadString('\n')
				require.NoError(t, err)
				assert.Equal(t, "echo: ping\n", line)
				conn.Close()
				requireSettled(t, bal)
			})
		}
	}
}

// TestH2CSmuggleBlocked runs the attack against a backend that accepts h2c
// upgrades. Go 1.26's http.Server does not (with UnencryptedHTTP2 it
// speaks HTTP/2 to a connection that opens with the HTTP/2 preface, and
// passes "Upgrade: h2c" to the handler as any header), so the backend
// here adds it the way permissive servers do: on the Upgrade token alone,
// it answers 101 and hands the connection to a Go http.Server that speaks
// HTTP/2 on it. Before the fix the client got the 101 and then sent
// HTTP/2 requests that reached the backend without the balancer: the test
// makes one and reports what the backend saw. Now the client gets the
// backend's plain HTTP/1.1 200.
func TestH2CSmuggleBlocked(t *testing.T) {
	backend := startH2CBackend(t)
	for _, p := range proxyPaths {
		_, addr := startTunnelGateway(t, backend, p.opts)
		for _, c := range h2cCases {
			t.Run(p.name+"/"+c.name, func(t *testing.T) {
				resp, body, conn, br := rawExchange(t, addr, "GET /public HTTP/1.1\r\nHost: x\r\n"+c.head+"\r\n")
				if resp.StatusCode == http.StatusSwitchingProtocols {
					t.Fatalf("h2c upgrade went through the balancer: %s", smuggle(t, conn, br))
				}
				assert.Equal(t, http.StatusOK, resp.StatusCode)
				assert.Equal(t, "HTTP/1.1 GET /public", body)
			})
		}
	}
}

// smuggle sends an HTTP/2 request over conn, upgraded to h2c, and reports
// what the backend answered.
func smuggle(t *testing.T, conn net.Conn, br *bufio.Reader) string {
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tunnel := &bufferedConn{Conn: conn, r: br}
	tr := &http.Transport{
		Protocols: &protos,
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			return tunnel, nil
		},
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, "http://internal.test/admin", nil)
	require.NoError(t, err)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return fmt.Sprintf("101, then an HTTP/2 request failed: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("101, then an HTTP/2 request past the balancer got %s %q", resp.Status, body)
}

// bufferedConn is a net.Conn whose reads go through a bufio.Reader that
// may hold bytes already read from it.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// startH2CBackend starts a backend that accepts h2c upgrades: an HTTP/1.1
// httptest server whose handler, on "Upgrade: h2c", answers 101 and hands
// the connection to an HTTP/2-only http.Server through connListener. Both
// servers answer "<proto> <method> <path>" and, on HTTP/2, the
// X-Forwarded-For they got (none: the balancer never saw the request).
func startH2CBackend(t *testing.T) string {
	t.Helper()
	answer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s", r.Proto, r.Method, r.URL.Path)
		if r.ProtoMajor == 2 {
			fmt.Fprintf(w, " (X-Forwarded-For %q)", r.Header.Get("X-Forwarded-For"))
		}
	})
	l := &connListener{conns: make(chan net.Conn), done: make(chan struct{})}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	h2 := &http.Server{Handler: answer, Protocols: &protos}
	served := make(chan error, 1)
	go func() { served <- h2.Serve(l) }()

	h1 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !offersH2C(r.Header["Upgrade"]) {
			answer(w, r)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
		if brw.Flush() != nil || !l.hand(&bufferedConn{Conn: conn, r: brw.Reader}) {
			conn.Close()
		}
	}))
	t.Cleanup(func() {
		h1.Close()
		h2.Close()
		require.ErrorIs(t, <-served, http.ErrServerClosed)
	})
	return h1.URL
}

// connListener is a net.Listener whose connections are handed to it by
// hand.
type connListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

// hand gives c to the server that accepts from l; it reports false if l
// is closed.
func (l *connListener) hand(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

var _ net.Listener = (*connListener)(nil)
