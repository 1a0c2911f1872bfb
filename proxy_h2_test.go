package lb_test

// HTTP/2 backends: trailers reach HTTP/1.1 clients, one balancer serves
// gRPC (over HTTP/2) and WebSocket (over HTTP/1.1) to the same backends,
// and a stream the backend ends first ends for the client too.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
)

// streamGuard bounds a call that must end at once, so that a regression
// fails the test instead of hanging it: it is no timing assertion.
const streamGuard = 10 * time.Second

// h2cOnly returns Protocols with unencrypted HTTP/2 alone (prior
// knowledge), and HTTP/1 too if h1.
func h2cOnly(h1 bool) *http.Protocols {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	p.SetHTTP1(h1)
	return p
}

// startH2C starts a backend on 127.0.0.1 that speaks h2c with prior
// knowledge, and HTTP/1.1 on the same port if h1.
func startH2C(t *testing.T, h1 bool, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.Protocols = h2cOnly(h1)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// h2cTransport is lb.NewTransport made to speak only h2c, as a user
// passes it with lb.WithTransport to reach h2c backends.
func h2cTransport(t *testing.T) *http.Transport {
	tr := lb.NewTransport()
	tr.Protocols = h2cOnly(false)
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// h2Setup is a way of sending requests to HTTP/2 backends, on one of the
// two proxy paths.
type h2Setup struct {
	name string
	opts func(t *testing.T) []lb.Option
}

// bothPaths returns each setup twice: on the relay path and through
// httputil.ReverseProxy.
func bothPaths(setups ...h2Setup) []h2Setup {
	var all []h2Setup
	for _, s := range setups {
		all = append(all, s, h2Setup{s.name + " via ReverseProxy", func(t *testing.T) []lb.Option {
			return append(s.opts(t), lb.ViaReverseProxy())
		}})
	}
	return all
}

var (
	withH2CTransport = h2Setup{"WithTransport(h2c)", func(t *testing.T) []lb.Option {
		return []lb.Option{lb.WithTransport(h2cTransport(t))}
	}}
	withBackendHTTP2 = h2Setup{"BackendHTTP2", func(*testing.T) []lb.Option {
		return []lb.Option{lb.WithBackendProtocol(lb.BackendHTTP2)}
	}}
	withHTTP2ForGRPC = h2Setup{"BackendHTTP2ForGRPC", func(*testing.T) []lb.Option {
		return []lb.Option{lb.WithBackendProtocol(lb.BackendHTTP2ForGRPC)}
	}}
)

// TestTrailersFromHTTP2Backend: an HTTP/1.1 client gets the trailers of an
// HTTP/2 backend, announced and not, on both paths. Go's HTTP/2 server
// sends a Content-Length along with the trailers of a handler that did not
// flush, and the balancer passed that length on, so its HTTP/1.1 answer
// could not be chunked and lost every trailer (an HTTP/1.1 backend, which
// chunks, was fine). Without TE: trailers an unannounced trailer is not
// expected, and the length stays.
func TestTrailersFromHTTP2Backend(t *testing.T) {
	t.Parallel()
	backend := startH2C(t, false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Proto", r.Proto)
		if r.URL.Path == "/announced" {
			w.Header().Set("Trailer", "X-Sum")
		}
		io.WriteString(w, "body with trailers")
		w.Header().Set("X-Sum", "abc")
		w.Header().Set(http.TrailerPrefix+"X-Late", "late")
	}))
	for _, s := range bothPaths(withH2CTransport, withBackendHTTP2) {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			pool, _ := poolOf(t, backend.URL)
			g := startGateway(t, pool, nil, s.opts(t)...)
			for _, c := range []struct {
				path, te string
				want     http.Header
			}{
				{"/announced", "", http.Header{"X-Sum": {"abc"}, "X-Late": {"late"}}},
				{"/unannounced", "trailers", http.Header{"X-Late": {"late"}}},
				{"/unannounced", "", nil},
			} {
				req, err := http.NewRequest(http.MethodGet, g.url+c.path, nil)
				require.NoError(t, err)
				if c.te != "" {
					req.Header.Set("Te", c.te)
				}
				resp, err := g.c.Do(req)
				require.NoError(t, err)
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				require.NoError(t, err)
				assert.Equal(t, "body with trailers", string(body), "GET %s", c.path)
				assert.Equal(t, "HTTP/2.0", resp.Header.Get("X-Proto"), "GET %s: the backend's protocol", c.path)
				assert.Equal(t, 1, resp.ProtoMajor, "GET %s: the client's protocol", c.path)
				if c.want == nil {
					assert.Empty(t, resp.Trailer, "GET %s, TE %q: trailers", c.path, c.te)
					assert.EqualValues(t, len(body), resp.ContentLength, "GET %s, TE %q: the length", c.path, c.te)
					continue
				}
				assert.Equal(t, c.want, resp.Trailer, "GET %s, TE %q: trailers", c.path, c.te)
			}
		})
	}
}

// mixedBackend is one backend server that speaks HTTP/1.1 and h2c on one
// port, as a gRPC service with a WebSocket endpoint beside it does. It
// answers a websocket upgrade as upgrader does, a gRPC request with
// "<proto> <te> <body>" and a grpc-status trailer it does not announce (as
// gRPC servers do not), and anything else with its protocol.
func mixedBackend(t *testing.T) *httptest.Server {
	ws := upgrader("mixed", "websocket")
	return startH2C(t, true, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case hasToken(r.Header, "Connection", "upgrade"):
			ws(w, r)
		case strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc"):
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "application/grpc")
			fmt.Fprintf(w, "%s %s %s", r.Proto, r.Header.Get("Te"), body)
			w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
		default:
			io.WriteString(w, r.Proto)
		}
	}))
}

// grpcCall sends a gRPC-shaped request through g: a POST of a body of
// unknown length, with TE: trailers. It returns the answer's body and
// trailers.
func grpcCall(t *testing.T, g *gateway, contentType, msg string) (string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, g.url+"/pkg.Service/Call",
		io.MultiReader(strings.NewReader(msg))) // no length: the body streams
	require.NoError(t, err)
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Te", "trailers")
	resp, err := g.c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "answer %q", body)
	return string(body), resp.Trailer
}

// TestGRPCAndWebSocketOnOneBalancer: with WithBackendProtocol, one balancer
// over one backend that speaks both protocols sends a gRPC call over
// HTTP/2 (its trailer comes back to the HTTP/1.1 client) and a WebSocket
// over HTTP/1.1 (it gets its 101 and echoes); a plain GET, and a gRPC-Web
// call, go over HTTP/1.1 unless the backend is declared HTTP/2. Before, a
// transport was HTTP/1.1 or h2c for every request, and with an h2c one the
// WebSocket handshake got 502.
func TestGRPCAndWebSocketOnOneBalancer(t *testing.T) {
	t.Parallel()
	backend := mixedBackend(t)
	for _, c := range []struct {
		setup     h2Setup
		plainOver string
	}{
		{withHTTP2ForGRPC, "HTTP/1.1"},
		{withBackendHTTP2, "HTTP/2.0"},
	} {
		for _, s := range bothPaths(c.setup) {
			t.Run(s.name, func(t *testing.T) {
				t.Parallel()
				pool, _ := poolOf(t, backend.URL)
				g := startGateway(t, pool, nil, s.opts(t)...)

				for _, ct := range []string{"application/grpc", "application/grpc+proto"} {
					body, trailer := grpcCall(t, g, ct, "\x00\x00\x00\x00\x02hi")
					assert.Equal(t, "HTTP/2.0 trailers \x00\x00\x00\x00\x02hi", body, "what the backend got (%s)", ct)
					assert.Equal(t, "0", trailer.Get("Grpc-Status"), "the grpc-status trailer (%s)", ct)
				}
				body, _ := grpcCall(t, g, "application/grpc-web", "web")
				assert.Equal(t, c.plainOver+" trailers web", body, "the protocol of a gRPC-Web call")

				conn, br, resp := dialUpgrade(t, g)
				require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode, "the WebSocket handshake")
				greeting, err := br.ReadString('\n')
				require.NoError(t, err)
				assert.Equal(t, "hello from mixed\n", greeting)
				fmt.Fprintf(conn, "ping\n")
				echo, err := br.ReadString('\n')
				require.NoError(t, err)
				assert.Equal(t, "echo: ping\n", echo)
				conn.Close()

				plain := g.mustDo(t, http.MethodGet, "/", "", nil, nil)
				assert.Equal(t, c.plainOver, string(plain.body), "the protocol of a plain GET")
			})
		}
	}
}

// TestStreamEndedByBackendFirst: a bidi-style call whose backend answers
// after one message and returns while the client keeps its request body
// open ends for the client at once, with the body, EOF and the trailer,
// and the attempt is settled as a success. Before, the HTTP/2 transport's
// Close waited for the request body to be written out (golang/go#48908),
// which the client never finishes: the call hung until its deadline.
func TestStreamEndedByBackendFirst(t *testing.T) {
	t.Parallel()
	for _, s := range bothPaths(withHTTP2ForGRPC, withH2CTransport) {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			a, b := startH2C(t, false, earlyAnswer), startH2C(t, false, earlyAnswer)
			pool, bes := poolOf(t, a.URL, b.URL)
			checkStreamEnds(t, lb.New(pool, lb.RoundRobin(), s.opts(t)...), bes)
		})
	}
}

// TestStreamEndedByBackendFirstTLS is TestStreamEndedByBackendFirst with
// TLS backends, which negotiate h2 by ALPN with the HTTP/2 copy of a
// transport given with WithTransport: the copy keeps its TLS config
// (the test certificate's root), as it keeps every other setting.
func TestStreamEndedByBackendFirstTLS(t *testing.T) {
	t.Parallel()
	for _, via := range []bool{false, true} {
		t.Run(fmt.Sprint("via ReverseProxy ", via), func(t *testing.T) {
			t.Parallel()
			var urls []string
			tr := lb.NewTransport()
			for range 2 {
				srv := httptest.NewUnstartedServer(earlyAnswer)
				srv.EnableHTTP2 = true
				srv.StartTLS()
				t.Cleanup(srv.Close)
				urls = append(urls, srv.URL)
				tr.TLSClientConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
			}
			t.Cleanup(tr.CloseIdleConnections)
			opts := []lb.Option{lb.WithTransport(tr), lb.WithBackendProtocol(lb.BackendHTTP2ForGRPC)}
			if via {
				opts = append(opts, lb.ViaReverseProxy())
			}
			pool, bes := poolOf(t, urls...)
			checkStreamEnds(t, lb.New(pool, lb.RoundRobin(), opts...), bes)
		})
	}
}

// TestStreamEndedByBackendFirstHTTP1Client is TestStreamEndedByBackendFirst
// with an HTTP/1.1 client, whose open request body is chunked: the
// balancer's HTTP/2 side is the same, and so is the fix.
func TestStreamEndedByBackendFirstHTTP1Client(t *testing.T) {
	t.Parallel()
	for _, s := range bothPaths(withHTTP2ForGRPC) {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			a, b := startH2C(t, false, earlyAnswer), startH2C(t, false, earlyAnswer)
			pool, bes := poolOf(t, a.URL, b.URL)
			bal := lb.New(pool, nil, s.opts(t)...)
			g := serveGateway(t, bal, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				// Go's HTTP/1 server writes no response while the
				// handler may still read the request body, unless
				// told (golang/go#15527).
				assert.NoError(t, http.NewResponseController(w).EnableFullDuplex())
				bal.ServeHTTP(w, r)
			}))
			checkStreamCalls(t, g.url, g.c, bal, bes)
		})
	}
}

// earlyAnswer is a backend that answers a stream after its first message
// (5 bytes) and returns, leaving the rest of the request unread: a gRPC
// server that sends its status early. On /pkg.Chat/Fail it fails the call
// at once, status and all, without reading anything.
var earlyAnswer = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/grpc")
	w.Header().Set("Trailer", "Grpc-Status")
	if r.URL.Path == "/pkg.Chat/Fail" {
		w.WriteHeader(http.StatusOK)
		w.Header().Set("Grpc-Status", "13")
		return
	}
	msg := make([]byte, 5)
	if _, err := io.ReadFull(r.Body, msg); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, "pong %s %s", r.Proto, msg)
	w.Header().Set("Grpc-Status", "0")
})

// checkStreamEnds serves bal on an h2c front and makes calls that keep
// their request open, two to each of its two backends bes: one answered
// after a message, one failed at once. Each must end with its body, EOF
// and trailer, and leave its backend with nothing in flight, no failure
// and up.
func checkStreamEnds(t *testing.T, bal *lb.Balancer, bes []*lb.Backend) {
	t.Helper()
	t.Cleanup(func() { require.NoError(t, bal.Close()) })
	front := startH2C(t, false, bal)
	client := &http.Client{Transport: &http.Transport{Protocols: h2cOnly(false)}}
	t.Cleanup(client.CloseIdleConnections)
	checkStreamCalls(t, front.URL, client, bal, bes)
}

// checkStreamCalls is checkStreamEnds with the front at url and a client
// of the caller's.
func checkStreamCalls(t *testing.T, url string, client *http.Client, bal *lb.Balancer, bes []*lb.Backend) {
	t.Helper()
	for i := range 2 { // round robin: one call of each kind to each backend
		body, trailer := openStreamCall(t, client, url+"/pkg.Chat/Talk", fmt.Sprintf("msg-%d", i))
		assert.Equal(t, fmt.Sprintf("pong HTTP/2.0 msg-%d", i), body)
		assert.Equal(t, "0", trailer.Get("Grpc-Status"), "the trailer")
	}
	for i := range 2 {
		body, trailer := openStreamCall(t, client, url+"/pkg.Chat/Fail", fmt.Sprintf("msg-%d", i))
		assert.Empty(t, body)
		assert.Equal(t, "13", trailer.Get("Grpc-Status"), "the trailer of a failed call")
	}
	for _, be := range bes {
		eventually(t, "no attempt in flight", func() bool { return be.Active() == 0 })
	}
	for _, st := range bal.Stats().Backends {
		assert.Equal(t, int64(2), st.Requests, "%s: requests", st.URL)
		assert.Zero(t, st.Failures, "%s: failures", st.URL)
		assert.Equal(t, lb.StateUp, st.State, "%s: state", st.URL)
	}
}

// openStreamCall makes a call to url whose request body stays open while
// the response is read: it sends msg (5 bytes) and then nothing. It
// returns the response body and trailer; the body must end within
// streamGuard.
func openStreamCall(t *testing.T, client *http.Client, url, msg string) (string, http.Header) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), streamGuard)
	defer cancel()
	pr, pw := io.Pipe()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer pw.Close() // the client half-closes only after the test looked
	// Past the guard, end the request body too: an HTTP/1 client does
	// not return from a cancelled call while its body is being written.
	defer context.AfterFunc(ctx, func() { pw.CloseWithError(ctx.Err()) })()
	wg.Go(func() { _, _ = io.WriteString(pw, msg) })
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, pr)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err, "reading the response while the request stays open")
	return string(body), resp.Trailer
}

// TestWithBackendProtocolInvalid: a value that is none of the constants is
// a programming error, and New says which option it came from.
func TestWithBackendProtocolInvalid(t *testing.T) {
	pool, _ := poolOf(t, "http://127.0.0.1:1")
	assert.PanicsWithValue(t, "lb: WithBackendProtocol(7): not a BackendProtocol", func() {
		lb.New(pool, nil, lb.WithBackendProtocol(7))
	})
}
