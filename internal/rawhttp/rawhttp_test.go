package rawhttp_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb/internal/rawhttp"
)

// httpServer serves h on 127.0.0.1 and returns its address.
func httpServer(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// rawServer answers every connection by reading the request head, sending
// it on heads, writing reply as it is and closing the connection.
func rawServer(t *testing.T, reply string) (addr string, heads <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ch := make(chan string, 16)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				var head strings.Builder
				for {
					line, err := br.ReadString('\n')
					head.WriteString(line)
					if err != nil || line == "\r\n" {
						break
					}
				}
				ch <- head.String()
				io.WriteString(c, reply)
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String(), ch
}

// closedAddr returns an address on 127.0.0.1 that nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// fatalRecorder stands in for a test so that a Fatal can be seen: it
// records the message and ends the goroutine, as testing.T does.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatal(args ...any) {
	r.msg = fmt.Sprint(args...)
	runtime.Goexit()
}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// fatal runs f with a fatalRecorder and returns the message it failed
// with, or "" if it did not fail.
func fatal(t *testing.T, f func(tb testing.TB)) string {
	r := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r.msg
}

func TestDoWritesTheRequestAsGiven(t *testing.T) {
	raw := "GET /a%2Fb HTTP/1.1\r\nHost: x\r\nConnection: \r\nConnection: X-Hop\r\nX-Hop: 1\r\n\r\n"
	addr, heads := rawServer(t, "HTTP/1.1 204 No Content\r\n\r\n")
	resp := rawhttp.Do(t, addr, raw)
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.Equal(t, raw, <-heads)
}

func TestDoReadsOneResponseWithItsBody(t *testing.T) {
	got := make(chan []string, 1)
	addr := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Values("X-Dup")
		w.Header().Set("X-Answer", "yes")
		io.WriteString(w, "hello "+r.URL.Path)
	})
	resp := rawhttp.Do(t, addr, "GET /p HTTP/1.1\r\nHost: x\r\nX-Dup: 1\r\nX-Dup: 2\r\nConnection: close\r\n\r\n")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "yes", resp.Header.Get("X-Answer"))
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, "hello /p", string(body))
	assert.NoError(t, resp.Body.Close())
	assert.Equal(t, []string{"1", "2"}, <-got)
}

func TestDoReadsHeadAnswersWithoutABody(t *testing.T) {
	addr, _ := rawServer(t, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
	// Read as a GET answer, the head would promise a body the closed
	// connection does not bring, and Do would fail.
	resp := rawhttp.Do(t, addr, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.EqualValues(t, 5, resp.ContentLength)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Empty(t, body)
}

func TestDoReturnsAnInterimResponseLikeAnyOther(t *testing.T) {
	addr, _ := rawServer(t, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	resp := rawhttp.Do(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	assert.Equal(t, http.StatusEarlyHints, resp.StatusCode)
	assert.Equal(t, "</a.css>", resp.Header.Get("Link"))
}

func TestDoFailsTheTestWhenTheAnswerIsCut(t *testing.T) {
	noHead, _ := rawServer(t, "HTTP/1.1 200 OK\r\nContent-Le")
	msg := fatal(t, func(tb testing.TB) { rawhttp.Do(tb, noHead, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") })
	assert.Contains(t, msg, "reading the answer to")

	shortBody, _ := rawServer(t, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
	msg = fatal(t, func(tb testing.TB) { rawhttp.Do(tb, shortBody, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") })
	assert.Contains(t, msg, "reading the body of the answer to")

	msg = fatal(t, func(tb testing.TB) { rawhttp.Do(tb, closedAddr(t), "GET / HTTP/1.1\r\nHost: x\r\n\r\n") })
	assert.Contains(t, msg, "refused")
}

func TestSendReadsInterimFinalAndTrailers(t *testing.T) {
	addr := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</a.css>")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("Trailer", "X-Sum")
		io.WriteString(w, "body")
		w.Header().Set("X-Sum", "42")
	})
	x := rawhttp.Send(t, addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	require.NoError(t, x.Err)
	require.Len(t, x.Interim, 1)
	assert.Equal(t, http.StatusEarlyHints, x.Interim[0].StatusCode)
	assert.Equal(t, "</a.css>", x.Interim[0].Header.Get("Link"))
	require.NotNil(t, x.Response)
	assert.Equal(t, http.StatusOK, x.Response.StatusCode)
	assert.Equal(t, "body", string(x.Body))
	assert.Equal(t, "42", x.Response.Trailer.Get("X-Sum"))
	body, err := io.ReadAll(x.Response.Body)
	require.NoError(t, err)
	assert.Equal(t, "body", string(body))
}

func TestSendReportsAnAnswerCutShort(t *testing.T) {
	t.Run("before any head", func(t *testing.T) {
		addr, _ := rawServer(t, "")
		x := rawhttp.Send(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		assert.Error(t, x.Err)
		assert.Nil(t, x.Response)
		assert.Empty(t, x.Interim)
	})
	t.Run("after an interim response", func(t *testing.T) {
		addr, _ := rawServer(t, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200")
		x := rawhttp.Send(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		assert.Error(t, x.Err)
		assert.Nil(t, x.Response)
		require.Len(t, x.Interim, 1)
		assert.Equal(t, http.StatusContinue, x.Interim[0].StatusCode)
	})
	t.Run("in the body", func(t *testing.T) {
		addr, _ := rawServer(t, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
		x := rawhttp.Send(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		assert.ErrorIs(t, x.Err, io.ErrUnexpectedEOF)
		require.NotNil(t, x.Response)
		assert.Equal(t, http.StatusOK, x.Response.StatusCode)
		assert.Equal(t, "abc", string(x.Body))
	})
}

func TestSendFailsTheTestOnlyWhenItCannotDial(t *testing.T) {
	msg := fatal(t, func(tb testing.TB) { rawhttp.Send(tb, closedAddr(t), "GET / HTTP/1.1\r\nHost: x\r\n\r\n") })
	assert.Contains(t, msg, "refused")
	addr, _ := rawServer(t, "")
	msg = fatal(t, func(tb testing.TB) { rawhttp.Send(tb, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") })
	assert.Empty(t, msg)
}
