package lb

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Half-closed upgraded connections. Every request that upgrades takes
// ReverseProxy's path, whichever the options (relays sends no upgrade to
// relay), and ReverseProxy's copier passes a half-close on only to a side
// that has CloseWrite: the 101 body the balancer wraps must have it. The
// tests run with the default options and with every request sent through
// ReverseProxy, so that a change to how a path is chosen stays covered.

// hangGuard bounds every blocking read and write of these tests, so that a
// broken tunnel fails the test instead of hanging it. It is not a timing
// assertion: nothing here should take more than milliseconds.
const hangGuard = 10 * time.Second

// proxyPaths are the two ways the balancer proxies a request.
var proxyPaths = []struct {
	name string
	opts []Option
}{
	{"default", nil},
	{"ReverseProxy", []Option{optionFunc(func(o *options) { o.viaReverseProxy = true })}},
}

// startTunnelBackend starts a raw TCP backend on 127.0.0.1 that reads one
// HTTP/1.1 request per connection and, if it asks to upgrade to tcptest,
// answers 101 and hands the connection to serve; other requests get 400.
// Cleanup closes the listener and every connection, and waits for the
// goroutines.
func startTunnelBackend(t *testing.T, serve func(c *net.TCPConn, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex // protects conns
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(hangGuard))
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				if upgradeType(req.Header) != "tcptest" {
					io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
					return
				}
				io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: tcptest\r\n\r\n")
				serve(c.(*net.TCPConn), br)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "http://" + ln.Addr().String()
}

// startTunnelGateway starts a balancer over the one backend at url, served
// by an httptest server, and returns it with the server's address.
func startTunnelGateway(t *testing.T, url string, opts []Option) (*Balancer, string) {
	t.Helper()
	be, err := NewBackend(url)
	require.NoError(t, err)
	pool, err := NewPool(be)
	require.NoError(t, err)
	bal := New(pool, RoundRobin(), opts...)
	srv := httptest.NewServer(bal)
	t.Cleanup(func() {
		srv.Close()
		bal.Close()
	})
	return bal, srv.Listener.Addr().String()
}

// dialTunnel opens a raw connection to the gateway at addr and upgrades it
// to tcptest; it returns the connection and a reader positioned after the
// 101's head.
func dialTunnel(t *testing.T, addr string) (*net.TCPConn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(hangGuard))
	_, err = io.WriteString(c, "GET /tunnel HTTP/1.1\r\nHost: tunnel.test\r\nConnection: Upgrade\r\nUpgrade: tcptest\r\n\r\n")
	require.NoError(t, err)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode, "the upgrade was not accepted")
	require.Equal(t, "tcptest", resp.Header.Get("Upgrade"))
	return c.(*net.TCPConn), br
}

// requireSettled waits until the balancer counts no connection on any
// backend: the tunnel's attempt was settled when both sides closed.
func requireSettled(t *testing.T, bal *Balancer) {
	t.Helper()
	require.Eventually(t, func() bool {
		st := bal.Stats()
		return st.Active == 0 && st.Backends[0].Active == 0 && bal.Pool().Backends()[0].Active() == 0
	}, hangGuard, time.Millisecond, "the tunnel is still counted active after both sides closed")
}

// TestUpgradeClientHalfClose: a client that half-closes an upgraded
// connection still gets what the backend sends afterwards, and the backend
// reads EOF after the client's last byte. Before trackedConn had
// CloseWrite, the client's EOF ended the tunnel at once: the backend read
// EOF from the proxy's full close and "late data" never reached the
// client.
func TestUpgradeClientHalfClose(t *testing.T) {
	for _, p := range proxyPaths {
		t.Run(p.name, func(t *testing.T) {
			backendRead := make(chan string, 1)
			url := startTunnelBackend(t, func(c *net.TCPConn, br *bufio.Reader) {
				got, err := io.ReadAll(br)
				if err != nil {
					got = append(got, fmt.Sprintf(" (read error: %v)", err)...)
				}
				backendRead <- string(got)
				io.WriteString(c, "late data")
			})
			bal, addr := startTunnelGateway(t, url, p.opts)
			c, br := dialTunnel(t, addr)

			_, err := io.WriteString(c, "ping")
			require.NoError(t, err)
			require.NoError(t, c.CloseWrite())
			select {
			case got := <-backendRead:
				assert.Equal(t, "ping", got, "what the backend read before EOF")
			case <-time.After(hangGuard):
				t.Fatal("the backend never read EOF after the client half-closed")
			}
			got, err := io.ReadAll(br)
			require.NoError(t, err, "reading the tunnel after the half-close")
			assert.Equal(t, "late data", string(got), "what the client read after its half-close")
			requireSettled(t, bal)
		})
	}
}

// TestUpgradeBackendHalfClose is the mirror: the backend half-closes
// first, the client reads EOF and then goes on sending, and the backend
// reads all of it and then EOF once the client half-closes as well.
// ReverseProxy passes a half-close on to the client's connection (a
// *net.TCPConn) itself, so this direction worked before the fix too; the
// test guards it, and the settling of the attempt once both sides closed.
func TestUpgradeBackendHalfClose(t *testing.T) {
	for _, p := range proxyPaths {
		t.Run(p.name, func(t *testing.T) {
			backendRead := make(chan string, 1)
			url := startTunnelBackend(t, func(c *net.TCPConn, br *bufio.Reader) {
				io.WriteString(c, "early data")
				if err := c.CloseWrite(); err != nil {
					backendRead <- fmt.Sprintf("CloseWrite: %v", err)
					return
				}
				got, err := io.ReadAll(br)
				if err != nil {
					got = append(got, fmt.Sprintf(" (read error: %v)", err)...)
				}
				backendRead <- string(got)
			})
			bal, addr := startTunnelGateway(t, url, p.opts)
			c, br := dialTunnel(t, addr)

			got, err := io.ReadAll(br)
			require.NoError(t, err, "reading the tunnel until the backend's half-close")
			assert.Equal(t, "early data", string(got))
			for _, s := range []string{"ping ", "pong"} {
				_, err := io.WriteString(c, s)
				require.NoError(t, err, "writing after the backend half-closed")
			}
			require.NoError(t, c.CloseWrite())
			select {
			case got := <-backendRead:
				assert.Equal(t, "ping pong", got, "what the backend read after its half-close")
			case <-time.After(hangGuard):
				t.Fatal("the backend never read EOF after the client half-closed")
			}
			n, err := br.Read(make([]byte, 1))
			assert.Equal(t, 0, n)
			assert.ErrorIs(t, err, io.EOF, "the tunnel is closed once both sides have half-closed")
			requireSettled(t, bal)
		})
	}
}

// TestUpgradeHalfCloseLargeAnswer: a client that half-closes right after
// its request gets all of a large answer the backend streams after that
// request's EOF, in order, and then EOF.
func TestUpgradeHalfCloseLargeAnswer(t *testing.T) {
	answer := strings.Repeat("0123456789abcdef", 64<<10) // 1 MiB, more than any buffer on the way
	for _, p := range proxyPaths {
		t.Run(p.name, func(t *testing.T) {
			url := startTunnelBackend(t, func(c *net.TCPConn, br *bufio.Reader) {
				req, err := io.ReadAll(br)
				if err != nil || string(req) != "send it" {
					io.WriteString(c, fmt.Sprintf("bad request %q, %v", req, err))
					return
				}
				io.WriteString(c, answer)
			})
			bal, addr := startTunnelGateway(t, url, p.opts)
			c, br := dialTunnel(t, addr)

			_, err := io.WriteString(c, "send it")
			require.NoError(t, err)
			require.NoError(t, c.CloseWrite())
			got, err := io.ReadAll(br)
			require.NoError(t, err)
			require.Equal(t, len(answer), len(got), "bytes of the answer that reached the client")
			require.True(t, string(got) == answer, "the answer was corrupted on the way")
			requireSettled(t, bal)
		})
	}
}

// noCloseWrite is a RoundTripper whose 101 bodies have no CloseWrite, as
// a RoundTripper other than http.Transport may give.
type noCloseWrite struct{ base *http.Transport }

func (rt noCloseWrite) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := rt.base.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusSwitchingProtocols {
		resp.Body = struct{ io.ReadWriteCloser }{resp.Body.(io.ReadWriteCloser)}
	}
	return resp, err
}

// TestUpgradeHalfCloseWithoutCloseWrite: when the backend connection
// cannot be half-closed, a client's half-close ends the tunnel, as
// ReverseProxy does when CloseWrite fails: both sides are closed, nothing
// hangs, and the attempt is settled.
func TestUpgradeHalfCloseWithoutCloseWrite(t *testing.T) {
	backendRead := make(chan string, 1)
	url := startTunnelBackend(t, func(c *net.TCPConn, br *bufio.Reader) {
		got, _ := io.ReadAll(br)
		backendRead <- string(got)
	})
	tr := NewTransport()
	t.Cleanup(tr.CloseIdleConnections)
	bal, addr := startTunnelGateway(t, url, []Option{WithTransport(noCloseWrite{tr})})
	c, br := dialTunnel(t, addr)

	_, err := io.WriteString(c, "ping")
	require.NoError(t, err)
	require.NoError(t, c.CloseWrite())
	select {
	case got := <-backendRead:
		assert.Equal(t, "ping", got)
	case <-time.After(hangGuard):
		t.Fatal("the backend connection was not closed")
	}
	got, _ := io.ReadAll(br)
	assert.Empty(t, string(got))
	requireSettled(t, bal)
}
