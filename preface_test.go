package lb_test

import (
	"bufio"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
)

// A client that speaks HTTP/2 with prior knowledge to an HTTP/1-only
// front sends the connection preface, which net/http hands to the handler
// as a "PRI * HTTP/2.0" request. The balancer refuses it with 505 and
// counts nothing against the backends: before, each preface was tried on
// a backend, failed in the transport, and took that backend out.
func TestHTTP2PrefaceOnHTTP1Front(t *testing.T) {
	a, b := startUpstream(t, "a", nil), startUpstream(t, "b", nil)
	pool, _ := poolOf(t, a.url, b.url)
	bal := lb.New(pool, lb.RoundRobin())
	t.Cleanup(func() { bal.Close() })
	front := httptest.NewServer(bal)
	t.Cleanup(front.Close)

	for range 4 {
		c, err := net.Dial("tcp", front.Listener.Addr().String())
		require.NoError(t, err)
		require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
		_, err = c.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		resp.Body.Close()
		c.Close()
		assert.Equal(t, http.StatusHTTPVersionNotSupported, resp.StatusCode)
	}
	st := bal.Stats()
	for _, bs := range st.Backends {
		assert.Equal(t, lb.StateUp, bs.State, "backend %s", bs.URL)
		assert.Zero(t, bs.Failures, "failures of %s", bs.URL)
		assert.Zero(t, bs.Requests, "attempts on %s", bs.URL)
	}
	resp, err := http.Get(front.URL)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}
