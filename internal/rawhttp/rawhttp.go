// Package rawhttp sends hand-written HTTP/1.x requests over a new TCP
// connection and reads what the server answers, for tests that need bytes
// net/http's client would not send: repeated or empty header lines, odd
// request targets, bad Hosts, hop-by-hop headers of every kind. It is
// imported only by tests.
//
// Do is for a test that wants one response: it fails the test when the
// head or the body cannot be read. Send is for a test that compares whole
// exchanges: it reads every 1xx response and the final one, and reports a
// connection that ended early in Exchange.Err instead of failing.
//
// The request is written as given, byte for byte; its method, the text
// before the first space, tells how to read the answer (a HEAD answer has
// no body). Every connection has a deadline of Timeout and is closed
// before Do or Send returns.
package rawhttp

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Timeout bounds a whole exchange: dialing aside, writing the request and
// reading every answer.
const Timeout = 10 * time.Second

// Exchange is what a server sent back to one raw request.
type Exchange struct {
	// Interim are the 1xx responses (101 included) that came before the
	// final one, in order.
	Interim []*http.Response
	// Response is the final response, or nil when the connection ended
	// before its whole head. Its Body has been read, as far as it arrived,
	// and replaced by a reader over Body; its Trailer is filled in when the
	// whole body arrived.
	Response *http.Response
	// Body is what arrived of the final response's body.
	Body []byte
	// Err is the error that ended reading early: nil when the whole final
	// response arrived.
	Err error
}

// Do writes raw to addr over a new connection and reads one response, as
// http.ReadResponse does (a 1xx response is returned like any other), with
// its body. It fails t when it cannot dial, write, or read the head or the
// whole body. The returned response's Body is a reader over the bytes
// read; closing it is optional.
func Do(t testing.TB, addr, raw string) *http.Response {
	t.Helper()
	c, br := open(t, addr, raw)
	defer c.Close()
	resp, err := http.ReadResponse(br, &http.Request{Method: method(raw)})
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", raw, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("reading the body of the answer to %q: %v", raw, err)
	}
	return resp
}

// Send writes raw to addr over a new connection and reads every response
// to it: the 1xx ones and the final one, with its body. It fails t only
// when it cannot dial or write; what ended reading early is in Err.
func Send(t testing.TB, addr, raw string) *Exchange {
	t.Helper()
	c, br := open(t, addr, raw)
	defer c.Close()
	req := &http.Request{Method: method(raw)}
	x := &Exchange{}
	for {
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			x.Err = err
			return x
		}
		if resp.StatusCode >= 100 && resp.StatusCode <= 199 {
			x.Interim = append(x.Interim, resp)
			continue
		}
		x.Body, x.Err = io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(bytes.NewReader(x.Body))
		x.Response = resp
		return x
	}
}

// open dials addr, sets the deadline and writes raw.
func open(t testing.TB, addr, raw string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetDeadline(time.Now().Add(Timeout)); err != nil {
		c.Close()
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, raw); err != nil {
		c.Close()
		t.Fatal(err)
	}
	return c, bufio.NewReader(c)
}

// method returns the request method of raw: the text before its first
// space.
func method(raw string) string {
	m, _, _ := strings.Cut(raw, " ")
	return m
}
