package health

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// An HTTPCheck works as a value and as a pointer, and a copy made after
// it checked checks as it does: it has no state (it used to keep its
// transport in a sync.Once, so it had to be a pointer and never copied).
func TestHTTPCheckValueAndPointer(t *testing.T) {
	target := serve(t, statusHandler)
	c := HTTPCheck{Path: "/?status=204", StatusMax: 299}
	var (
		asValue   Checker = c
		asPointer Checker = &c
	)
	require.NoError(t, asValue.Check(context.Background(), target), "value")
	require.NoError(t, asPointer.Check(context.Background(), target), "pointer")
	copied := c
	require.NoError(t, copied.Check(context.Background(), target), "copy")
	copied.Path = "/?status=503"
	assert.ErrorContains(t, copied.Check(context.Background(), target), "status 503 outside 200-299", "changed copy")
	require.NoError(t, c.Check(context.Background(), target), "original after its copy changed")
	assert.Equal(t, c.Schedule(), asValue.(Scheduler).Schedule())
	assert.Equal(t, c.Schedule(), asPointer.(Scheduler).Schedule())
}

// The default transports are shared by checks of one Timeout and keep each
// Timeout's dial and handshake bounds.
func TestCheckTransportPerTimeout(t *testing.T) {
	a, b := checkTransport(time.Second), checkTransport(time.Second)
	c := checkTransport(3 * time.Second)
	assert.Same(t, a, b, "one transport per timeout")
	assert.NotSame(t, a, c, "another timeout, another transport")
	assert.Equal(t, time.Second, a.TLSHandshakeTimeout)
	assert.Equal(t, 3*time.Second, c.TLSHandshakeTimeout)
	assert.True(t, a.DisableKeepAlives && c.DisableKeepAlives, "keep-alives off")
	assert.Nil(t, a.Proxy, "no proxy")
}
