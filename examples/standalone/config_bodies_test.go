package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// countingBackend counts the requests that reach it, each as soon as its
// headers arrive.
func countingBackend(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		buf := make([]byte, 512)
		for {
			if _, err := r.Body.Read(buf); err != nil {
				break
			}
		}
	}))
	t.Cleanup(s.Close)
	return s, &n
}

// halfUpload sends a PUT announcing 10 bytes and sends 5, then waits.
func halfUpload(t *testing.T, proxyURL string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(proxyURL, "http://"))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_, err = fmt.Fprintf(c, "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
	require.NoError(t, err)
	return c
}

// request_buffering is lb.RequestBuffering: with its defaults a body of
// known length is read before a backend is chosen, under a timeout.
func TestRequestBufferingSettings(t *testing.T) {
	be, hits := countingBackend(t)
	path := writeConfig(t, fmt.Sprintf(`{"backends": [{"url": %q}], "request_buffering": {"timeout": "300ms"}}`, be.URL))
	r := start(t, "-config", path)
	c := halfUpload(t, r.url)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err, "no answer to a body cut short past request_buffering.timeout")
	resp.Body.Close()
	assert.Equal(t, http.StatusRequestTimeout, resp.StatusCode)
	assert.Zero(t, hits.Load(), "a body that never arrived reached the backend")

	// max -1 turns buffering off: the request reaches the backend while
	// its body is still coming.
	be2, hits2 := countingBackend(t)
	path = writeConfig(t, fmt.Sprintf(`{"backends": [{"url": %q}], "request_buffering": {"max": -1}}`, be2.URL))
	r2 := start(t, "-config", path)
	halfUpload(t, r2.url)
	deadline := time.Now().Add(10 * time.Second)
	for hits2.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	assert.EqualValues(t, 1, hits2.Load(), "with request_buffering.max -1 the request streams to the backend")
}

// body_memory is lb.WithBodyMemory: a body that finds no room streams
// without a copy, and Stats counts it.
func TestBodyMemorySetting(t *testing.T) {
	be := backend(t, "be", 0)
	path := writeConfig(t, fmt.Sprintf(`{"backends": [{"url": %q}], "body_memory": 16}`, be.URL))
	r := start(t, "-config", path)
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Post(r.url, "text/plain", strings.NewReader(strings.Repeat("x", 8192)))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.EqualValues(t, 1, r.p.bal.Stats().Unbuffered)
}

func TestBodySettingsChecked(t *testing.T) {
	for _, tt := range []struct{ file, want string }{
		{`"request_buffering": {"max": -2}`, `request_buffering.max: -2: must be -1 (off), 0 (the default, 1 MiB) or more`},
		{`"body_memory": -2`, `body_memory: -2: must be -1 (no bound), 0 (the default, 64 MiB or GOMEMLIMIT/8) or more`},
		{`"request_buffering": {"timeout": "x"}`, `request_buffering.timeout: "x": invalid duration`},
	} {
		path := writeConfig(t, `{"backends": [{"url": "http://127.0.0.1:9001"}], `+tt.file+`}`)
		_, err := load([]string{"-config", path})
		assert.EqualError(t, err, path+": "+tt.want, "file %s", tt.file)
	}
	for _, ok := range []string{`"request_buffering": {"max": -1, "timeout": "-1s"}`, `"body_memory": -1`, `"request_buffering": {}`} {
		path := writeConfig(t, `{"backends": [{"url": "http://127.0.0.1:9001"}], `+ok+`}`)
		_, err := load([]string{"-config", path})
		assert.NoError(t, err, "file %s", ok)
	}
}
