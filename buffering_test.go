package lb_test

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
)

// countingBackend is a backend that counts its connections and reports
// each request's headers as it arrives, before reading the body.
type countingBackend struct {
	srv     *httptest.Server
	conns   atomic.Int64 // connections ever opened
	arrived chan http.Header
	bodies  chan string
}

func startCountingBackend(t *testing.T) *countingBackend {
	t.Helper()
	c := &countingBackend{arrived: make(chan http.Header, 16), bodies: make(chan string, 16)}
	c.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		h.Set("X-Content-Length", strconv.FormatInt(r.ContentLength, 10))
		h.Set("X-Transfer-Encoding", strings.Join(r.TransferEncoding, ","))
		c.arrived <- h
		b, err := io.ReadAll(r.Body)
		if err != nil {
			c.bodies <- "error: " + err.Error()
			return
		}
		c.bodies <- string(b)
		fmt.Fprintf(w, "got %d", len(b))
	}))
	c.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			c.conns.Add(1)
		}
	}
	c.srv.Start()
	t.Cleanup(c.srv.Close)
	return c
}

// dialGateway opens a raw connection to g.
func dialGateway(t *testing.T, g *gateway) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", g.srv.Listener.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	return conn, bufio.NewReader(conn)
}

// A body of known length up to RequestBuffering.Max is read in full before
// a backend is chosen: while the client is still sending it, no backend
// connection is open (nginx's proxy_request_buffering).
func TestRequestBufferingHoldsSlowUploads(t *testing.T) {
	t.Parallel()
	be := startCountingBackend(t)
	pool, _ := poolOf(t, be.srv.URL)
	g := startGateway(t, pool, lb.RoundRobin())
	conn, rd := dialGateway(t, g)
	body := strings.Repeat("b", 1000)
	_, err := fmt.Fprintf(conn, "POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body[:500])
	require.NoError(t, err)
	// The balancer has the headers and half the body. Wait until it holds
	// the request (Stats counts the bytes it keeps), then check that the
	// backend has seen nothing.
	eventually(t, "the balancer to hold the first half", func() bool { return g.bal.Stats().BodyMemory > 0 })
	assert.Zero(t, be.conns.Load(), "no backend connection while the body is on its way")
	assert.Empty(t, be.arrived)
	_, err = io.WriteString(conn, body[500:])
	require.NoError(t, err)
	resp, err := http.ReadResponse(rd, nil)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "got 1000", string(b))
	h := <-be.arrived
	assert.Equal(t, "1000", h.Get("X-Content-Length"), "sent with its length")
	assert.Equal(t, body, <-be.bodies)
	eventually(t, "the body memory given back", func() bool { return g.bal.Stats().BodyMemory == 0 })
}

// A buffered body that does not arrive within RequestBuffering.Timeout is
// answered 408 and the connection closed; no backend sees the request.
func TestRequestBufferingTimeout(t *testing.T) {
	t.Parallel()
	be := startCountingBackend(t)
	pool, _ := poolOf(t, be.srv.URL)
	g := startGateway(t, pool, lb.RoundRobin(),
		lb.WithRequestBuffering(lb.RequestBuffering{Timeout: 50 * time.Millisecond}))
	conn, rd := dialGateway(t, g)
	_, err := io.WriteString(conn, "PUT /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly this")
	require.NoError(t, err)
	resp, err := http.ReadResponse(rd, nil)
	require.NoError(t, err)
	_, err = io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, http.StatusRequestTimeout, resp.StatusCode)
	assert.True(t, resp.Close, "the connection is closed after a body timeout")
	_, err = rd.ReadByte()
	assert.ErrorIs(t, err, io.EOF, "the server closed the connection")
	assert.Zero(t, be.conns.Load())
	st := g.bal.Stats()
	assert.Zero(t, st.Failures, "the client's fault, not a backend's")
	assert.Zero(t, st.BodyMemory)
}

// Bodies of unknown length stream: they may be streams the client keeps
// open while it reads the answer. So do bodies over Max, and all bodies
// with buffering off.
func TestRequestBufferingStreamsTheRest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts []lb.Option
		head string
	}{
		{"chunked", nil, "POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n"},
		{"over Max", []lb.Option{lb.WithRequestBuffering(lb.RequestBuffering{Max: 100})},
			"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 105\r\n\r\nfirst"},
		{"off", []lb.Option{lb.WithRequestBuffering(lb.RequestBuffering{Max: -1})},
			"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nfir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := startCountingBackend(t)
			pool, _ := poolOf(t, be.srv.URL)
			g := startGateway(t, pool, lb.RoundRobin(), tc.opts...)
			conn, _ := dialGateway(t, g)
			_, err := io.WriteString(conn, tc.head)
			require.NoError(t, err)
			await(t, be.arrived, "the request to reach the backend before its body ended")
		})
	}
}

// The client's Expect: 100-continue is answered by the balancer's server
// when the body is read ahead; the backend is not asked again.
func TestRequestBufferingExpectContinue(t *testing.T) {
	t.Parallel()
	be := startCountingBackend(t)
	pool, _ := poolOf(t, be.srv.URL)
	g := startGateway(t, pool, lb.RoundRobin())
	conn, rd := dialGateway(t, g)
	_, err := io.WriteString(conn, "PUT /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 7\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(rd, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusContinue, resp.StatusCode)
	_, err = io.WriteString(conn, "payload")
	require.NoError(t, err)
	resp, err = http.ReadResponse(rd, nil)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	assert.Equal(t, "got 7", string(b))
	h := <-be.arrived
	assert.Empty(t, h.Get("Expect"), "the backend is not asked for a 100")
}

// A client that hangs up while its body is read ahead costs no backend
// anything: nothing is sent, nothing counted as a failure.
func TestBufferedUploadAbort(t *testing.T) {
	t.Parallel()
	be := startCountingBackend(t)
	pool, bes := poolOf(t, be.srv.URL)
	g := startGateway(t, pool, lb.RoundRobin(),
		lb.WithPassiveHealth(&health.Passive{MaxFails: 1, FailTimeout: time.Minute}))
	conn, _ := dialGateway(t, g)
	_, err := io.WriteString(conn, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("x", 10000))
	require.NoError(t, err)
	eventually(t, "the balancer to hold the first bytes", func() bool { return g.bal.Stats().BodyMemory > 0 })
	conn.Close()
	eventually(t, "the body memory given back", func() bool { return g.bal.Stats().BodyMemory == 0 })
	assert.Zero(t, be.conns.Load())
	assert.True(t, bes[0].Alive())
	st := g.bal.Stats()
	assert.Zero(t, st.Requests)
	assert.Zero(t, st.Failures)
}

// WithBodyMemory bounds what all requests together keep. A body that finds
// no room streams; it is counted in Stats.Unbuffered and not retried once
// sent, while one that found room is replayed on a retry.
func TestBodyMemoryBound(t *testing.T) {
	t.Parallel()
	body := pseudoRandom(64<<10, 7)
	for _, tc := range []struct {
		name       string
		memory     int64
		wantStatus int
		unbuffered int64
	}{
		{"room", 1 << 20, http.StatusOK, 0},
		{"no room", 16 << 10, http.StatusServiceUnavailable, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Whichever backend gets a request first answers 503; the
			// second attempt, if there is one, succeeds.
			var attempts atomic.Int64
			h := func(name string) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					if attempts.Add(1) == 1 {
						w.WriteHeader(http.StatusServiceUnavailable)
						return
					}
					answerName(w, r, name)
				}
			}
			a, b := startUpstream(t, "a", h("a")), startUpstream(t, "b", h("b"))
			pool, _ := poolOf(t, a.url, b.url)
			g := startGateway(t, pool, lb.RoundRobin(), lb.WithBodyMemory(tc.memory),
				lb.WithRetry(lb.RetryPolicy{Statuses: []int{http.StatusServiceUnavailable}}))
			id := "put-" + tc.name
			out := g.mustDo(t, http.MethodPut, "/", id, body, nil)
			assert.Equal(t, tc.wantStatus, out.status)
			st := g.bal.Stats()
			assert.Equal(t, tc.unbuffered, st.Unbuffered)
			assert.Zero(t, st.BodyMemory, "given back after the request")
			want := int64(1)
			if tc.wantStatus == http.StatusOK {
				want = 2
			}
			assert.Equal(t, want, attempts.Load())
			for _, u := range []*upstream{a, b} {
				if u.hits(id) > 0 {
					assert.Equal(t, sha256.Sum256(body), u.get(t, id).bodySum, "%s got the whole body", u.name)
				}
			}
		})
	}
}
