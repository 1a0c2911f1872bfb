package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
)

// TestMain fails the run if any goroutine outlives the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestQuantile(t *testing.T) {
	s := []uint32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	assert.Equal(t, uint32(5), quantile(s, 0.50))
	assert.Equal(t, uint32(10), quantile(s, 0.99))
	assert.Equal(t, uint32(1), quantile(s, 0))
	assert.Equal(t, uint32(10), quantile(s, 1))
	assert.Equal(t, uint32(7), quantile([]uint32{7}, 0.99))
	hundred := make([]uint32, 100)
	for i := range hundred {
		hundred[i] = uint32(i + 1)
	}
	assert.Equal(t, uint32(99), quantile(hundred, 0.99), "nearest rank, no float drift")
	assert.Equal(t, uint32(50), quantile(hundred, 0.50))
}

func TestSummarizeAndLine(t *testing.T) {
	r := summarize([][]uint32{{30, 10}, {20}, nil, {40}}, 2*time.Second)
	r.errors = 3
	assert.Equal(t, 4, r.rpcs)
	assert.Equal(t, uint32(20), r.p50)
	assert.Equal(t, uint32(40), r.p99)
	assert.Equal(t, uint32(40), r.max)
	assert.InDelta(t, 2.0, r.rps(), 1e-9)
	c := loadConfig{addrs: []string{"a:1", "b:2"}, workers: 64, conns: 4, size: 16}
	assert.Equal(t, "grpcbench target=a:1,b:2 kind=unary c=64 conns=4 size=16 elapsed_s=2.000 rpcs=4 errors=3 rps=2 p50_us=20 p99_us=40 p999_us=40 max_us=40", r.line(c))
	c.stream = 10
	assert.Contains(t, r.line(c), " kind=stream10 ")

	empty := summarize(nil, 0)
	assert.Zero(t, empty.rps())
	assert.Contains(t, empty.line(c), " rpcs=0 errors=0 rps=0 p50_us=0 ")
}

func TestSplitList(t *testing.T) {
	assert.Equal(t, []string{"a", "b"}, splitList(" a,,b ,"))
	assert.Nil(t, splitList(""))
}

func TestBadFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	assert.Equal(t, 2, run(nil, &out, &errOut), "no mode")
	assert.Contains(t, errOut.String(), "exactly one of")
	assert.Equal(t, 2, run([]string{"-proxy", "x", "-load", "y"}, &out, &errOut), "two modes")
	errOut.Reset()
	assert.Equal(t, 1, run([]string{"-load", "127.0.0.1:1", "-c", "0"}, &out, &errOut))
	assert.Contains(t, errOut.String(), "-c and -conns must be at least 1")
}

// startEcho starts one bench backend on a free port, stopped by cleanup.
func startEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := grpc.NewServer()
	s.RegisterService(&echoDesc, &benchEcho{name: "b1"})
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() { s.Stop(); <-done })
	return ln.Addr().String()
}

// The load client runs unary and streaming calls, directly and through
// the proxy mode's tinylb, without errors.
func TestLoadDirectAndThroughProxy(t *testing.T) {
	b1, b2 := startEcho(t), startEcho(t)
	bal, tr, err := newProxy([]string{"http://" + b1, "http://" + b2})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := frontServer(bal)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		assert.NoError(t, srv.Close())
		assert.ErrorIs(t, <-served, http.ErrServerClosed)
		bal.Close()
		tr.CloseIdleConnections()
	})

	for _, c := range []loadConfig{
		{addrs: []string{b1, b2}, workers: 4, conns: 2, size: 16, dur: 100 * time.Millisecond},
		{addrs: []string{ln.Addr().String()}, workers: 4, conns: 2, size: 16, dur: 100 * time.Millisecond},
		{addrs: []string{ln.Addr().String()}, workers: 2, conns: 1, size: 0, dur: 100 * time.Millisecond, stream: 5},
	} {
		res, err := runLoad(context.Background(), c)
		require.NoError(t, err)
		assert.Zero(t, res.errors, "%v", res.firstErr)
		assert.Positive(t, res.rpcs)
		assert.True(t, strings.HasPrefix(res.line(c), "grpcbench target="))
	}
}

// A load run whose first call fails says where.
func TestLoadNoServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = runLoad(ctx, loadConfig{addrs: []string{addr}, workers: 1, conns: 1, dur: time.Second})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "first call on connection 0")
}
