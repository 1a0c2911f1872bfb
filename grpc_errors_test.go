package lb_test

// gRPC calls through the balancer: the balancer's own error answers are
// gRPC's (HTTP 200, content-type application/grpc, a Trailers-Only
// grpc-status: PROTOCOL-HTTP2.md, Responses), on an h2c front and an
// HTTP/1.1 one; a backend's Trailers-Only UNAVAILABLE is a failed attempt,
// retried only when gRFC A6 and the policy allow; a status in trailers
// after a message is the application's answer. Backends speak h2c only and
// write gRPC's framing by hand.

import (
	"bytes"
	"encoding/binary"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
)

const grpcContentType = "application/grpc"

// rpcFrame is msg as a gRPC Length-Prefixed-Message: a zero compressed
// flag, the length in 4 big-endian bytes, the message.
func rpcFrame(msg []byte) []byte {
	b := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	return append(b, msg...)
}

// rpcBackend is an h2c-only backend that reads each call's whole body,
// records it, and then answers with its handler.
type rpcBackend struct {
	url   string
	calls atomic.Int64

	mu     sync.Mutex // protects bodies
	bodies [][]byte
}

func startRPCBackend(t *testing.T, h func(w http.ResponseWriter, r *http.Request)) *rpcBackend {
	t.Helper()
	b := &rpcBackend{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		b.mu.Lock()
		b.bodies = append(b.bodies, body)
		b.mu.Unlock()
		b.calls.Add(1)
		h(w, r)
	}))
	srv.Config.Protocols = h2cOnly(false)
	srv.Start()
	t.Cleanup(srv.Close)
	b.url = srv.URL
	return b
}

// lastBody is the body of the last call b got.
func (b *rpcBackend) lastBody(t *testing.T) []byte {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	require.NotEmpty(t, b.bodies, "no call reached the backend")
	return b.bodies[len(b.bodies)-1]
}

// rpcReply answers a call with one message, name, and grpc-status 0 in
// trailers, not announced, as grpc-go's server sends them.
func rpcReply(name string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", grpcContentType)
		w.WriteHeader(http.StatusOK)
		w.Write(rpcFrame([]byte(name)))
		w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
	}
}

// rpcTrailersOnly answers a call with a Trailers-Only answer: grpc-status
// and grpc-message in the headers, no body.
func rpcTrailersOnly(code int, msg string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", grpcContentType)
		h.Set("Grpc-Status", strconv.Itoa(code))
		h.Set("Grpc-Message", msg)
		w.WriteHeader(http.StatusOK)
	}
}

// rpcTransport is the balancer's transport to h2c backends: the library's
// defaults, speaking h2c only.
func rpcTransport(t *testing.T) *http.Transport {
	t.Helper()
	tr := lb.NewTransport()
	tr.Protocols = h2cOnly(false)
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// rpcFront serves a balancer over h2c and HTTP/1.1, with a client for each.
type rpcFront struct {
	bal *lb.Balancer
	url string
	h2  *http.Client // h2c with prior knowledge, as grpc-go dials
	h1  *http.Client
}

// serveRPC serves bal. Cleanups close, in order, the server, the balancer
// and the clients' idle connections.
func serveRPC(t *testing.T, bal *lb.Balancer) *rpcFront {
	t.Helper()
	tr2 := &http.Transport{Protocols: h2cOnly(false)}
	tr1 := &http.Transport{}
	t.Cleanup(tr2.CloseIdleConnections)
	t.Cleanup(tr1.CloseIdleConnections)
	t.Cleanup(func() { require.NoError(t, bal.Close()) })
	srv := httptest.NewUnstartedServer(bal)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return &rpcFront{bal: bal, url: srv.URL, h2: &http.Client{Transport: tr2}, h1: &http.Client{Transport: tr1}}
}

// rpcResult is what a client got for a call.
type rpcResult struct {
	proto   string
	status  int
	header  http.Header
	body    []byte
	trailer http.Header
}

// call makes a unary call with content-type ct carrying msg. The body has
// no declared length, as grpc-go sends it.
func (f *rpcFront) call(t *testing.T, c *http.Client, ct string, msg []byte) rpcResult {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.url+"/lbtest.Echo/Say", io.NopCloser(bytes.NewReader(rpcFrame(msg))))
	require.NoError(t, err)
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Te", "trailers")
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return rpcResult{proto: resp.Proto, status: resp.StatusCode, header: resp.Header, body: body, trailer: resp.Trailer}
}

// requireTrailersOnly checks that res is a gRPC Trailers-Only answer with
// grpc-status code and grpc-message msg.
func requireTrailersOnly(t *testing.T, res rpcResult, code int, msg string) {
	t.Helper()
	require.Equalf(t, http.StatusOK, res.status, "%s answer %q, headers %v", res.proto, res.body, res.header)
	assert.Equal(t, grpcContentType, res.header.Get("Content-Type"), "content-type")
	assert.Equal(t, strconv.Itoa(code), res.header.Get("Grpc-Status"), "grpc-status in the headers")
	assert.Equal(t, msg, res.header.Get("Grpc-Message"), "grpc-message")
	assert.Empty(t, res.body, "a Trailers-Only answer has no body")
	assert.Empty(t, res.trailer.Get("Grpc-Status"), "no status in trailers")
}

// TestGRPCNoBackendIsUnavailable: with no backend to take it, a gRPC call
// gets 14 UNAVAILABLE in a Trailers-Only answer on both fronts, with
// WithRetryAfter as gRFC A6's pushback; requests that are not gRPC calls
// (gRPC-Web, JSON, a GET) keep the 503; after Close the call gets 14 too.
func TestGRPCNoBackendIsUnavailable(t *testing.T) {
	t.Parallel()
	be := startRPCBackend(t, rpcReply("a"))
	pool, _ := poolOf(t, be.url)
	f := serveRPC(t, lb.New(pool, lb.RoundRobin(), lb.WithTransport(rpcTransport(t)), lb.WithRetryAfter(2*time.Second)))
	require.NoError(t, pool.SetMaintenance(be.url, true))

	for _, front := range []struct {
		name   string
		client *http.Client
	}{{"h2c front", f.h2}, {"HTTP/1.1 front", f.h1}} {
		for _, ct := range []string{"application/grpc", "application/grpc+proto", "Application/GRPC+json", "application/grpc;charset=utf-8"} {
			t.Run(front.name+"/"+ct, func(t *testing.T) {
				res := f.call(t, front.client, ct, []byte("hello"))
				requireTrailersOnly(t, res, 14, "lb: no healthy backend")
				assert.Equal(t, "2000", res.header.Get("Grpc-Retry-Pushback-Ms"), "WithRetryAfter as gRFC A6 pushback")
				assert.Empty(t, res.header.Get("Retry-After"))
			})
		}
		for _, ct := range []string{"application/grpc-web+proto", "application/json"} {
			t.Run(front.name+"/"+ct, func(t *testing.T) {
				res := f.call(t, front.client, ct, []byte("hello"))
				assert.Equal(t, http.StatusServiceUnavailable, res.status, "not a gRPC call: HTTP's answer")
				assert.Equal(t, "2", res.header.Get("Retry-After"))
				assert.Empty(t, res.header.Get("Grpc-Status"))
			})
		}
		t.Run(front.name+"/GET", func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, f.url+"/", nil)
			require.NoError(t, err)
			req.Header.Set("Content-Type", grpcContentType)
			resp, err := front.client.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "a GET is no gRPC call")
		})
	}
	assert.Zero(t, be.calls.Load())

	require.NoError(t, f.bal.Close())
	requireTrailersOnly(t, f.call(t, f.h2, grpcContentType, []byte("hello")), 14, "lb: balancer closed")
}

// TestGRPCAllAttemptsFailIsUnavailable: when every backend refuses the
// connection, a gRPC call gets 14 UNAVAILABLE, naming no backend, on both
// fronts and both proxy paths.
func TestGRPCAllAttemptsFailIsUnavailable(t *testing.T) {
	t.Parallel()
	for _, path := range []struct {
		name string
		opt  lb.Option
	}{{"relay", nil}, {"ReverseProxy", lb.WithFlushInterval(time.Hour)}} {
		t.Run(path.name, func(t *testing.T) {
			t.Parallel()
			down1, down2 := refusingURL(t), refusingURL(t)
			pool, _ := poolOf(t, down1, down2)
			f := serveRPC(t, lb.New(pool, lb.RoundRobin(), lb.WithTransport(rpcTransport(t)),
				lb.WithPassiveHealth(health.Passive{MaxFails: -1}), path.opt))
			for _, front := range []struct {
				name   string
				client *http.Client
			}{{"h2c front", f.h2}, {"HTTP/1.1 front", f.h1}} {
				res := f.call(t, front.client, grpcContentType, []byte("hello"))
				requireTrailersOnly(t, res, 14, "lb: all attempts failed")
				for k, vv := range res.header {
					for _, v := range vv {
						assert.NotContains(t, v, hostPortOf(down1), "%s: header %s", front.name, k)
						assert.NotContains(t, v, hostPortOf(down2), "%s: header %s", front.name, k)
					}
				}
			}
			st := f.bal.Stats()
			assert.EqualValues(t, 2, st.Failed, "counted as failed answers, as the 502s are")
			assert.EqualValues(t, 4, st.Failures, "both backends tried for each call")
		})
	}
}

// TestGRPCTimeoutsAreDeadlineExceeded: a call whose backend does not
// answer within the transport's ResponseHeaderTimeout, or whose retries
// RetryPolicy.Timeout stops, gets 4 DEADLINE_EXCEEDED. The same POST
// without gRPC's content-type keeps its 504 and 502.
func TestGRPCTimeoutsAreDeadlineExceeded(t *testing.T) {
	t.Parallel()
	t.Run("ResponseHeaderTimeout", func(t *testing.T) {
		t.Parallel()
		hung := startRPCBackend(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
		tr := rpcTransport(t)
		tr.ResponseHeaderTimeout = 50 * time.Millisecond
		pool, _ := poolOf(t, hung.url)
		f := serveRPC(t, lb.New(pool, lb.RoundRobin(), lb.WithTransport(tr)))
		requireTrailersOnly(t, f.call(t, f.h2, grpcContentType, []byte("hello")), 4, "lb: backend timed out")
		requireTrailersOnly(t, f.call(t, f.h1, grpcContentType, []byte("hello")), 4, "lb: backend timed out")
		assert.Equal(t, http.StatusGatewayTimeout, f.call(t, f.h2, "application/octet-stream", []byte("hello")).status)
	})
	t.Run("RetryPolicy.Timeout", func(t *testing.T) {
		t.Parallel()
		clock := newHCClock()
		// Each backend takes an hour by the balancer's clock, then
		// resets the stream: a failure NonIdempotent would retry, but
		// the retry timeout has passed.
		slow := func(w http.ResponseWriter, r *http.Request) {
			clock.Advance(time.Hour)
			panic(http.ErrAbortHandler)
		}
		a, b := startRPCBackend(t, slow), startRPCBackend(t, slow)
		pool, _ := poolOf(t, a.url, b.url)
		f := serveRPC(t, lb.New(pool, lb.RoundRobin(), lb.WithTransport(rpcTransport(t)), lb.WithClock(clock.Now),
			lb.WithPassiveHealth(health.Passive{MaxFails: -1}),
			lb.WithRetry(lb.RetryPolicy{NonIdempotent: true, Timeout: time.Minute})))
		requireTrailersOnly(t, f.call(t, f.h2, grpcContentType, []byte("hello")), 4, "lb: retry timeout passed")
		assert.EqualValues(t, 1, a.calls.Load()+b.calls.Load(), "no attempt after the retry timeout")

		res := f.call(t, f.h2, "application/octet-stream", []byte("hello"))
		assert.Equal(t, http.StatusBadGateway, res.status, "HTTP keeps the last attempt's 502")
		assert.EqualValues(t, 2, a.calls.Load()+b.calls.Load())
	})
}

// TestGRPCTrailersOnlyUnavailable: backend a answers a call with a
// Trailers-Only UNAVAILABLE. That is a failure of a's (Stats, passive
// health), and the call is retried on b only when the policy retries a
// call that was sent (NonIdempotent) and the body was kept; otherwise the
// client gets a's answer as a sent it.
func TestGRPCTrailersOnlyUnavailable(t *testing.T) {
	t.Parallel()
	msg := bytes.Repeat([]byte("m"), 64)
	for _, c := range []struct {
		name    string
		policy  lb.RetryPolicy
		retried bool
	}{
		{"default policy", lb.RetryPolicy{}, false},
		{"NonIdempotent", lb.RetryPolicy{NonIdempotent: true}, true},
		{"NonIdempotent, body not kept", lb.RetryPolicy{NonIdempotent: true, BodyBuffer: 8}, false},
		{"NonIdempotent, one try", lb.RetryPolicy{NonIdempotent: true, Tries: 1}, false},
	} {
		for _, path := range []struct {
			name string
			opt  lb.Option
		}{{"relay", nil}, {"ReverseProxy", lb.WithFlushInterval(time.Hour)}} {
			t.Run(c.name+"/"+path.name, func(t *testing.T) {
				t.Parallel()
				a := startRPCBackend(t, rpcTrailersOnly(14, "a is draining"))
				b := startRPCBackend(t, rpcReply("b"))
				pool, _ := poolOf(t, a.url, b.url)
				f := serveRPC(t, lb.New(pool, lb.RoundRobin(), lb.WithTransport(rpcTransport(t)),
					lb.WithRetry(c.policy), path.opt))

				res := f.call(t, f.h2, grpcContentType, msg)
				st := f.bal.Stats()
				assert.EqualValues(t, 1, st.Backends[0].Failures, "a's UNAVAILABLE is a's failure")
				assert.Equal(t, lb.StateEjected, st.Backends[0].State, "passive health took a out")
				assert.EqualValues(t, 1, a.calls.Load())
				if !c.retried {
					requireTrailersOnly(t, res, 14, "a is draining")
					assert.Zero(t, b.calls.Load(), "not retried")
					return
				}
				require.Equalf(t, http.StatusOK, res.status, "answer %q", res.body)
				assert.Equal(t, rpcFrame([]byte("b")), res.body, "b's answer")
				assert.Equal(t, "0", res.trailer.Get("Grpc-Status"))
				assert.Empty(t, res.header.Get("Grpc-Status"))
				assert.EqualValues(t, 1, b.calls.Load())
				assert.Equal(t, rpcFrame(msg), b.lastBody(t), "b got the call's body whole")
				assert.EqualValues(t, 1, st.Backends[1].Retries)
				assert.Zero(t, st.Backends[1].Failures)
			})
		}
	}
}

// TestGRPCStatusInTrailersIsTheApplicationsAnswer: a call's NOT_FOUND, in
// trailers after a message or in a Trailers-Only answer, reaches the
// client as the backend sent it, is no failure and is not retried, though
// the policy would retry a call that failed.
func TestGRPCStatusInTrailersIsTheApplicationsAnswer(t *testing.T) {
	t.Parallel()
	afterMessage := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", grpcContentType)
		w.WriteHeader(http.StatusOK)
		w.Write(rpcFrame([]byte("partial")))
		w.Header().Set(http.TrailerPrefix+"Grpc-Status", "5")
		w.Header().Set(http.TrailerPrefix+"Grpc-Message", "no such key %E2%9C%93")
	}
	for _, c := range []struct {
		name string
		h    func(http.ResponseWriter, *http.Request)
	}{{"after a message", afterMessage}, {"Trailers-Only", rpcTrailersOnly(5, "no such key %E2%9C%93")}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			a := startRPCBackend(t, c.h)
			b := startRPCBackend(t, rpcReply("b"))
			pool, _ := poolOf(t, a.url, b.url)
			f := serveRPC(t, lb.New(pool, lb.RoundRobin(), lb.WithTransport(rpcTransport(t)),
				lb.WithRetry(lb.RetryPolicy{NonIdempotent: true})))

			res := f.call(t, f.h2, grpcContentType, []byte("hello"))
			require.Equal(t, http.StatusOK, res.status)
			if c.name == "after a message" {
				assert.Equal(t, rpcFrame([]byte("partial")), res.body)
				assert.Equal(t, "5", res.trailer.Get("Grpc-Status"))
				assert.Equal(t, "no such key %E2%9C%93", res.trailer.Get("Grpc-Message"))
			} else {
				requireTrailersOnly(t, res, 5, "no such key %E2%9C%93")
			}
			st := f.bal.Stats()
			assert.Zero(t, st.Failures, "the application's answer is no failure")
			assert.Equal(t, lb.StateUp, st.Backends[0].State)
			assert.Zero(t, b.calls.Load(), "not retried")
		})
	}
}

// TestGRPCRefusedConnectionIsRetried: a call whose connection was refused
// never reached a backend, and goes to the next one whatever the policy
// (gRFC A6's transparent retry), its body whole.
func TestGRPCRefusedConnectionIsRetried(t *testing.T) {
	t.Parallel()
	b := startRPCBackend(t, rpcReply("b"))
	pool, _ := poolOf(t, refusingURL(t), b.url)
	f := serveRPC(t, lb.New(pool, lb.RoundRobin(), lb.WithTransport(rpcTransport(t))))
	msg := bytes.Repeat([]byte("x"), 3000)
	res := f.call(t, f.h2, grpcContentType, msg)
	require.Equalf(t, http.StatusOK, res.status, "answer %q, headers %v", res.body, res.header)
	assert.Equal(t, rpcFrame([]byte("b")), res.body)
	assert.Equal(t, "0", res.trailer.Get("Grpc-Status"))
	assert.Equal(t, rpcFrame(msg), b.lastBody(t))
}
