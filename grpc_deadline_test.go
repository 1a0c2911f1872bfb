package lb_test

// A gRPC call's own deadline, its grpc-timeout: a backend that ends the
// call when the deadline passes (grpc-go's server resets the stream then)
// has not failed, and the call is DEADLINE_EXCEEDED, not retried; a retry
// made in time carries only what is left of the timeout.

import (
	"bytes"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
)

// callWithTimeout makes a unary call on the h2c front carrying
// grpc-timeout timeout, or none if it is empty.
func (f *rpcFront) callWithTimeout(t *testing.T, timeout string) rpcResult {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.url+"/lbtest.Echo/Wait", io.NopCloser(bytes.NewReader(rpcFrame([]byte("x")))))
	require.NoError(t, err)
	req.Header.Set("Content-Type", grpcContentType)
	req.Header.Set("Te", "trailers")
	if timeout != "" {
		req.Header.Set("Grpc-Timeout", timeout)
	}
	resp, err := f.h2.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return rpcResult{proto: resp.Proto, status: resp.StatusCode, header: resp.Header, body: body, trailer: resp.Trailer}
}

// TestGRPCResetAtTheCallsDeadline: both backends take two seconds by the
// balancer's clock and then reset the stream. A call with a one-second
// grpc-timeout is answered 4 DEADLINE_EXCEEDED after one attempt, and no
// backend is charged a failure (passive health would eject it at once).
// The same call with no grpc-timeout is a failure of each backend tried,
// retried as the policy says, and 14 UNAVAILABLE.
func TestGRPCResetAtTheCallsDeadline(t *testing.T) {
	t.Parallel()
	clock := newHCClock()
	slow := func(w http.ResponseWriter, r *http.Request) {
		clock.Advance(2 * time.Second)
		panic(http.ErrAbortHandler)
	}
	a, b := startRPCBackend(t, slow), startRPCBackend(t, slow)
	pool, _ := poolOf(t, a.url, b.url)
	f := serveRPC(t, lb.New(pool, lb.RoundRobin(), lb.WithTransport(rpcTransport(t)), lb.WithClock(clock.Now),
		lb.WithPassiveHealth(health.Passive{MaxFails: 1, FailTimeout: time.Hour}),
		lb.WithRetry(lb.RetryPolicy{NonIdempotent: true, Tries: 3})))

	requireTrailersOnly(t, f.callWithTimeout(t, "1S"), 4, "lb: the call's deadline passed")
	assert.EqualValues(t, 1, a.calls.Load()+b.calls.Load(), "no retry once the deadline has passed")
	st := f.bal.Stats()
	assert.Zero(t, st.Failures, "ending a call at its deadline is no backend's failure")
	for _, bs := range st.Backends {
		assert.Equal(t, lb.StateUp, bs.State, "%s", bs.URL)
	}

	// A grpc-timeout that does not parse is no deadline.
	requireTrailersOnly(t, f.callWithTimeout(t, "soon"), 14, "lb: all attempts failed")
	assert.EqualValues(t, 3, a.calls.Load()+b.calls.Load(), "retried on the other backend")
	assert.EqualValues(t, 2, f.bal.Stats().Failures, "each reset counted against its backend")
}

// TestGRPCRetryCarriesTheTimeLeft: the first attempt takes 300 ms by the
// balancer's clock and gets a Trailers-Only UNAVAILABLE; the retry goes
// out with grpc-timeout 700 ms, the time left of the client's second, and
// the first attempt carried the client's value unchanged.
func TestGRPCRetryCarriesTheTimeLeft(t *testing.T) {
	t.Parallel()
	clock := newHCClock()
	var n atomic.Int64
	seen := make(chan string, 2)
	h := func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("Grpc-Timeout")
		if n.Add(1) == 1 {
			clock.Advance(300 * time.Millisecond)
			rpcTrailersOnly(14, "busy")(w, r)
			return
		}
		rpcReply("second")(w, r)
	}
	a, b := startRPCBackend(t, h), startRPCBackend(t, h)
	pool, _ := poolOf(t, a.url, b.url)
	f := serveRPC(t, lb.New(pool, lb.RoundRobin(), lb.WithTransport(rpcTransport(t)), lb.WithClock(clock.Now),
		lb.WithPassiveHealth(health.Passive{MaxFails: -1}),
		lb.WithRetry(lb.RetryPolicy{NonIdempotent: true})))

	res := f.callWithTimeout(t, "1S")
	require.Equal(t, http.StatusOK, res.status)
	assert.Equal(t, rpcFrame([]byte("second")), res.body)
	assert.Equal(t, "0", res.trailer.Get("Grpc-Status"))
	assert.Equal(t, "1S", <-seen, "the first attempt")
	assert.Equal(t, "700000u", <-seen, "the retry")
}
