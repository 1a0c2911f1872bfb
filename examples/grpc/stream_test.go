package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tinylb/lb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// callGuard is the hang guard of a streaming call: a deadline far beyond
// what the call needs, so that a regression fails with DeadlineExceeded
// instead of hanging the test. It is no timing assertion.
const callGuard = 10 * time.Second

// backendKinds are the two ways the tests' backends serve gRPC: grpc-go's
// own server (grpc.Server.Serve, HTTP/2 only) and dual backends, where a
// net/http server speaks HTTP/1.1 and h2c and hands gRPC calls to
// grpc.Server.ServeHTTP. Their HTTP/2 differs where the server ends a
// stream the client is still sending on: grpc-go's own server resets it
// (RST_STREAM NO_ERROR), which ends the wait of Go's HTTP/2 transport for
// the request body by itself; net/http's server, though ServeHTTP has
// returned, leaves the client's side open, and only the balancer's ending
// of the backend exchange lets the call end (TestBidiServerEndsFirst).
var backendKinds = []struct {
	name  string
	start func(*testing.T) (*front, backends)
}{
	{"grpc.Server", testFront},
	{"ServeHTTP", testDualFront},
}

// A bidi stream goes to one backend and carries messages both ways, in
// turn: each message the client sends comes back echoed before the next
// is sent, then the client half-closes and the stream ends with OK.
func TestBidiStreaming(t *testing.T) {
	for _, kind := range backendKinds {
		t.Run(kind.name, func(t *testing.T) {
			f, _ := kind.start(t)
			checkChat(t, f, testClient(t, f))
		})
	}
}

// checkChat makes a Chat call of five messages through f.
func checkChat(t *testing.T, f *front, client echoClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callGuard)
	defer cancel()
	stream, err := client.Chat(ctx)
	require.NoError(t, err)

	var backend string
	for _, msg := range []string{"one", "two", "three", "four", "five"} {
		require.NoError(t, stream.SendMsg(wrapperspb.String(msg)))
		out := new(wrapperspb.StringValue)
		require.NoError(t, stream.RecvMsg(out), "the echo of %q", msg)
		name, echoed, ok := strings.Cut(out.GetValue(), ": ")
		require.True(t, ok, "an echo: %q", out.GetValue())
		assert.Equal(t, msg, echoed)
		if backend == "" {
			backend = name
		}
		assert.Equal(t, backend, name, "every message goes to the stream's backend")
	}
	assert.Contains(t, []string{"a", "b", "c"}, backend)
	require.NoError(t, stream.CloseSend())
	err = stream.RecvMsg(new(wrapperspb.StringValue))
	assert.ErrorIs(t, err, io.EOF, "the end of the stream, with OK: %v", err)
	assertSettled(t, f.bal)
}

// A bidi call that the server ends (with OK or an error) after one
// message, while the client still has its side open, ends for the client
// as soon as the server returns: Recv gets the server's status, not the
// guard's DeadlineExceeded. The balancer's attempt is settled (nothing in
// flight) and counts as no failure: the backend stays up. With ServeHTTP
// backends this needs the balancer to end the backend exchange itself
// (golang/go#48908, see the README's "Streams the backend ends first"):
// with that taken out of the library, those calls hung until the guard,
// while those to grpc.Server backends still ended.
func TestBidiServerEndsFirst(t *testing.T) {
	for _, kind := range backendKinds {
		t.Run(kind.name, func(t *testing.T) {
			f, bs := kind.start(t)
			client := testClient(t, f)
			checkChatEnds(t, f, client, "!OK", codes.OK)
			checkChatEnds(t, f, client, "!FAILED_PRECONDITION", codes.FailedPrecondition)
			for _, b := range bs {
				st := statsOf(t, f.bal, b.url)
				assert.Equal(t, lb.StateUp, st.State, "%s (%s)", b.name, st.Reason)
				assert.Zero(t, st.Failures, "%s's failures", b.name)
			}
		})
	}
}

// checkChatEnds makes a Chat call whose one message, end, makes the
// server end it with want, and never half-closes it.
func checkChatEnds(t *testing.T, f *front, client echoClient, end string, want codes.Code) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callGuard)
	defer cancel()
	stream, err := client.Chat(ctx)
	require.NoError(t, err)
	require.NoError(t, stream.SendMsg(wrapperspb.String(end)))
	// No CloseSend: the client's side stays open.
	err = stream.RecvMsg(new(wrapperspb.StringValue))
	if want == codes.OK {
		assert.ErrorIs(t, err, io.EOF, "%s: the end of the stream, with OK: %v", end, err)
	} else {
		st, ok := status.FromError(err)
		require.True(t, ok, "%s: a gRPC status: %v", end, err)
		assert.Equal(t, want, st.Code(), "%s: %v", end, err)
		assert.Regexp(t, `^chat ended by [abc]$`, st.Message())
	}
	assert.NoError(t, ctx.Err(), "%s: the call ended before its guard", end)
	assertSettled(t, f.bal)
}

// assertSettled waits until the balancer has no attempt in flight: a
// stream's attempt is settled when the balancer is done with its
// response, just after the client has the end of it.
func assertSettled(t *testing.T, bal *lb.Balancer) {
	t.Helper()
	assert.Eventually(t, func() bool { return bal.Stats().Active == 0 }, callGuard, 10*time.Millisecond,
		"attempts in flight: %d", bal.Stats().Active)
}

// statsOf returns the balancer's stats of the backend at url.
func statsOf(t *testing.T, bal *lb.Balancer, url string) lb.BackendStats {
	t.Helper()
	for _, b := range bal.Stats().Backends {
		if b.URL == url {
			return b
		}
	}
	require.FailNow(t, "no stats for "+url)
	return lb.BackendStats{}
}

// A backend that dies in the middle of a server-streaming call ends the
// call with an error (the balancer aborts the client's stream, since the
// rest of the answer is lost), not with OK and not with a hang. The
// balancer counts the attempt as the backend's failure (passive health
// takes it out) and the calls after it go to the other backends.
func TestBackendKilledMidStream(t *testing.T) {
	f, bs := testFront(t)
	client := testClient(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), callGuard)
	defer cancel()
	stream, err := client.conn.NewStream(ctx, &countDesc, "/"+echoService+"/Count")
	require.NoError(t, err)
	require.NoError(t, stream.SendMsg(wrapperspb.String("3+"))) // 3 messages, then held open
	require.NoError(t, stream.CloseSend())
	var got []string
	for range 3 {
		out := new(wrapperspb.StringValue)
		require.NoError(t, stream.RecvMsg(out))
		got = append(got, out.GetValue())
	}
	name, _, _ := strings.Cut(got[0], " ")
	var killed *backend
	var others backends
	for _, b := range bs {
		if b.name == name {
			killed = b
		} else {
			others = append(others, b)
		}
	}
	require.NotNil(t, killed, "the backend of %q", got)
	assert.Equal(t, []string{name + " 1", name + " 2", name + " 3"}, got)
	require.NoError(t, killed.stop()) // closes its connections, the stream's among them

	err = stream.RecvMsg(new(wrapperspb.StringValue))
	require.Error(t, err, "a stream whose backend died")
	assert.NotErrorIs(t, err, io.EOF, "the stream must not look complete")
	t.Logf("the stream ended with: %v", err)
	code := status.Code(err)
	assert.Contains(t, []codes.Code{codes.Unavailable, codes.Internal}, code, "%v", err)
	assert.NoError(t, ctx.Err(), "the call ended before its guard")

	assertSettled(t, f.bal)
	// The attempt leaves the in-flight count before its outcome is
	// recorded: wait for that too.
	require.Eventually(t, func() bool {
		st := statsOf(t, f.bal, killed.url)
		return st.Failures >= 1 && st.State != lb.StateUp
	}, callGuard, 10*time.Millisecond, "%s counts a failure and is out of rotation", killed.name)
	calls := callers(t, client, 6)
	assert.NotContains(t, calls, killed.name, "calls after %s died", killed.name)
	assert.Equal(t, 6, calls[others[0].name]+calls[others[1].name], "calls %v", calls)
}
