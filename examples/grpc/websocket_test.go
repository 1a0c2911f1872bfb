package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tinylb/lb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// testDualFront starts three dual backends (a, b, c: gRPC over h2c and a
// WebSocket echo over HTTP/1.1 on each port) and tinylb in front of them,
// as testFront does.
func testDualFront(t *testing.T) (*front, backends) {
	t.Helper()
	return testFrontOf(t, startDualBackends)
}

// One balancer under BackendHTTP2ForGRPC serves gRPC and WebSocket from
// the same backends: a grpc-go client's unary call reaches its backend
// over HTTP/2, and a WebSocket handshake from a raw HTTP/1.1 client
// reaches its backend over HTTP/1.1, gets 101, and the connection then
// carries bytes both ways through the balancer.
func TestWebSocketAndGRPCThroughOneBalancer(t *testing.T) {
	f, bs := testDualFront(t)
	for _, b := range bs { // the health checks (h2c too) reach the dual backends
		require.NoError(t, waitState(context.Background(), f.bal, b.url, lb.StateUp))
	}

	var header metadata.MD
	reply, err := testClient(t, f).Hello(context.Background(), "grpc", grpc.Header(&header))
	require.NoError(t, err)
	require.Len(t, header.Get("x-backend"), 1)
	grpcBackend := header.Get("x-backend")[0]
	assert.Equal(t, "hello grpc from "+grpcBackend, reply)

	conn, err := net.Dial("tcp", f.addr)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(callGuard))) // a hang guard
	key := webSocketKey(t)
	req, err := http.NewRequest(http.MethodGet, "http://"+f.addr+"/ws", nil)
	require.NoError(t, err)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", key)
	require.NoError(t, req.Write(conn))
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, req)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, res.StatusCode, "the handshake's answer")
	assert.Equal(t, "websocket", res.Header.Get("Upgrade"))
	assert.Equal(t, webSocketAccept(key), res.Header.Get("Sec-WebSocket-Accept"))

	for _, msg := range []string{"ping through tinylb", "and again"} {
		_, err = conn.Write([]byte(msg))
		require.NoError(t, err)
		got := make([]byte, len(msg))
		_, err = io.ReadFull(br, got)
		require.NoError(t, err, "the echo of %q", msg)
		assert.Equal(t, msg, string(got))
	}

	var sawGRPC, sawWS []string
	for _, b := range bs {
		for _, s := range b.seen() {
			switch s {
			case "/" + echoService + "/Hello HTTP/2.0":
				sawGRPC = append(sawGRPC, b.name)
			case "/ws HTTP/1.1":
				sawWS = append(sawWS, b.name)
			}
		}
		assert.NotContains(t, b.seen(), "/"+echoService+"/Hello HTTP/1.1", "%s: no gRPC over HTTP/1.1", b.name)
		assert.NotContains(t, b.seen(), "/ws HTTP/2.0", "%s: no upgrade over HTTP/2", b.name)
	}
	assert.Equal(t, []string{grpcBackend}, sawGRPC, "backends that got the gRPC call over HTTP/2")
	assert.Len(t, sawWS, 1, "backends that got the handshake over HTTP/1.1")
}

// webSocketKey returns a fresh Sec-WebSocket-Key: 16 random bytes in
// base64 (RFC 6455 §4.1).
func webSocketKey(t *testing.T) string {
	t.Helper()
	var b [16]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	return base64.StdEncoding.EncodeToString(b[:])
}
