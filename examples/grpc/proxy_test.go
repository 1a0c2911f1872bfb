package main

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// testFront starts three grpc-go backends (a, b, c) and tinylb in front of
// them, checking their health with demoCheck; the test's cleanup stops
// them all.
func testFront(t *testing.T) (*front, backends) {
	t.Helper()
	return testFrontOf(t, startBackends)
}

// testFrontOf is testFront with backends a, b and c made by start.
func testFrontOf(t *testing.T, start func(names ...string) (backends, error)) (*front, backends) {
	t.Helper()
	bs, err := start("a", "b", "c")
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, bs.stop()) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f, err := startFront(ln, bs, demoCheck)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, f.close()) })
	return f, bs
}

// testClient returns a grpc-go client of the front, closed by the test's
// cleanup.
func testClient(t *testing.T, f *front) echoClient {
	t.Helper()
	conn, err := dial(f.addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return echoClient{conn}
}

// callers makes n Hello calls and counts them by the backend that
// answered, from the x-backend header.
func callers(t *testing.T, c echoClient, n int) map[string]int {
	t.Helper()
	got := make(map[string]int)
	for i := range n {
		var header metadata.MD
		_, err := c.Hello(context.Background(), strconv.Itoa(i), grpc.Header(&header))
		require.NoError(t, err)
		name := header.Get("x-backend")
		require.Len(t, name, 1, "x-backend header")
		got[name[0]]++
	}
	return got
}

// Unary calls over one client connection are spread over the backends:
// tinylb picks a backend per call (per HTTP/2 stream), not per connection.
func TestUnaryCallsSpread(t *testing.T) {
	f, _ := testFront(t)
	client := testClient(t, f)
	assert.Equal(t, map[string]int{"a": 3, "b": 3, "c": 3}, callers(t, client, 9))

	reply, err := client.Hello(context.Background(), "world")
	require.NoError(t, err)
	assert.Regexp(t, `^hello world from [abc]$`, reply)
}

// A server-streaming call goes to one backend, and its messages arrive in
// order, each as the backend sent it.
func TestServerStreaming(t *testing.T) {
	f, _ := testFront(t)
	client := testClient(t, f)
	msgs, err := client.Count(context.Background(), 50)
	require.NoError(t, err)
	require.Len(t, msgs, 50)
	name := msgs[0][:1]
	for i, m := range msgs {
		assert.Equal(t, name+" "+strconv.Itoa(i+1), m)
	}

	_, err = client.Count(context.Background(), -1)
	assert.Equal(t, codes.InvalidArgument, status.Code(err), "a stream's error status: %v", err)
}

// Metadata passes both ways: the caller's to the backend, the backend's
// header and trailer back.
func TestMetadataBothWays(t *testing.T) {
	f, _ := testFront(t)
	client := testClient(t, f)
	var header, trailer metadata.MD
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-request-id", "42")
	_, err := client.Hello(ctx, "md", grpc.Header(&header), grpc.Trailer(&trailer))
	require.NoError(t, err)
	assert.Equal(t, []string{"42"}, header.Get("x-request-id"), "the caller's metadata reached the backend")
	backend := header.Get("x-backend")
	require.Len(t, backend, 1)
	assert.Equal(t, backend, trailer.Get("x-served-by"), "the trailer")
}

// A status code other than OK, with its message, passes through.
func TestStatusPassesThrough(t *testing.T) {
	f, _ := testFront(t)
	client := testClient(t, f)
	_, err := client.Find(context.Background(), "missing")
	st, ok := status.FromError(err)
	require.True(t, ok, "a gRPC status: %v", err)
	assert.Equal(t, codes.NotFound, st.Code())
	assert.Regexp(t, `^no key "missing" on [abc]$`, st.Message())

	name, err := client.Find(context.Background(), "name")
	require.NoError(t, err)
	assert.Contains(t, []string{"a", "b", "c"}, name)
}

// A call's deadline reaches the backend (as grpc-timeout), and a call that
// outlives it ends with DEADLINE_EXCEEDED.
func TestDeadline(t *testing.T) {
	f, bs := testFront(t)
	client := testClient(t, f)
	deadlines := make(chan bool, len(bs))
	for _, b := range bs {
		b.echo.deadlines = deadlines // before any Wait call: no race
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := client.Wait(ctx)
	assert.Equal(t, codes.DeadlineExceeded, status.Code(err), "%v", err)
	select {
	case had := <-deadlines:
		assert.True(t, had, "the backend's call has a deadline")
	case <-time.After(10 * time.Second): // a hang guard, not a timing check
		t.Fatal("no backend got the call")
	}
}
