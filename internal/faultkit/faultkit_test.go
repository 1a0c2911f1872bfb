package faultkit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestBodyIsDeterministicAndVerified(t *testing.T) {
	a, b := Body("x1", 1000), Body("x1", 1000)
	if !bytes.Equal(a, b) {
		t.Fatal("Body is not deterministic")
	}
	if bytes.Equal(a, Body("x2", 1000)) {
		t.Fatal("two IDs share a body")
	}
	if !bytes.Equal(Body("x1", 10), a[:10]) {
		t.Fatal("a shorter body is not a prefix of a longer one")
	}
	if got, want := BodySHA("x1", 1000), SHA(a); got != want {
		t.Fatalf("BodySHA = %s, want %s", got, want)
	}
	if n, err := VerifyBody(bytes.NewReader(a), "x1", 1000); err != nil || n != 1000 {
		t.Fatalf("VerifyBody(intact) = %d, %v", n, err)
	}
	if n, err := VerifyBody(bytes.NewReader(a[:400]), "x1", 1000); !errors.Is(err, ErrShortBody) || n != 400 {
		t.Fatalf("VerifyBody(cut) = %d, %v; want 400, short body", n, err)
	}
	bad := bytes.Clone(a)
	bad[700] ^= 1
	if n, err := VerifyBody(bytes.NewReader(bad), "x1", 1000); !errors.Is(err, ErrBodyMismatch) || n != 700 {
		t.Fatalf("VerifyBody(flipped) = %d, %v; want 700, mismatch", n, err)
	}
	if _, err := VerifyBody(bytes.NewReader(append(bytes.Clone(a), 'x')), "x1", 1000); !errors.Is(err, ErrBodyMismatch) {
		t.Fatalf("VerifyBody(long) = %v; want mismatch", err)
	}
	if _, err := VerifyBody(bytes.NewReader(Body("other", 1000)), "x1", 1000); !errors.Is(err, ErrBodyMismatch) {
		t.Fatalf("VerifyBody(other id) = %v; want mismatch", err)
	}
}

// startOn serves the instrumented backend handler on a faulty listener.
func startOn(t *testing.T, f Fault) *Backend {
	t.Helper()
	b, err := NewBackend(Config{Name: "b", Fault: f, Keep: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

func client(t *testing.T, base string) *Client {
	c := NewClient(base)
	c.HTTP.Timeout = 5 * time.Second
	t.Cleanup(c.Close)
	return c
}

func TestListenerFaults(t *testing.T) {
	for _, tc := range []struct {
		f       Fault
		timeout bool // the client must time out
	}{
		{f: Fault{Kind: CloseOnAccept}},
		{f: Fault{Kind: ResetOnAccept}},
		{f: Fault{Kind: Hang}, timeout: true},
		{f: Fault{Kind: ResetAfterRead}},
		{f: Fault{Kind: ResetAfterRead, N: 5}},
		{f: Fault{Kind: HalfCloseAfterRead}},
	} {
		t.Run(tc.f.Kind.String(), func(t *testing.T) {
			b := startOn(t, tc.f)
			c := client(t, b.URL)
			if tc.timeout {
				c.HTTP.Timeout = 200 * time.Millisecond
			}
			a := c.Do(context.Background(), Request{N: 10})
			if a.Err == nil {
				t.Fatalf("got status %d, want an error", a.Status)
			}
			var ne net.Error
			if timedOut := errors.As(a.Err, &ne) && ne.Timeout(); timedOut != tc.timeout {
				t.Fatalf("error %v: timeout = %v, want %v", a.Err, timedOut, tc.timeout)
			}
			if b.Requests() != 0 {
				t.Fatalf("the handler saw %d requests", b.Requests())
			}
		})
	}
}

func TestListenerToxics(t *testing.T) {
	t.Run("one-byte writes and latency", func(t *testing.T) {
		b := startOn(t, Fault{WriteChunk: 1, ReadLatency: 20 * time.Millisecond})
		a := client(t, b.URL).Do(context.Background(), Request{N: 300})
		if !a.OK() {
			t.Fatalf("attempt %+v not OK", a)
		}
		if a.Duration < 20*time.Millisecond {
			t.Fatalf("took %v despite a 20ms read latency", a.Duration)
		}
	})
	t.Run("reset after write", func(t *testing.T) {
		b := startOn(t, Fault{})
		// Find the size of the header block first.
		a := client(t, b.URL).Do(context.Background(), Request{N: 1000})
		if !a.OK() {
			t.Fatalf("%+v", a)
		}
		b.SetFault(Fault{ResetAfterWrite: 300})
		a = client(t, b.URL).Do(context.Background(), Request{N: 100000})
		if a.Err == nil || a.Received >= 300 {
			t.Fatalf("got err %v after %d bytes; want an error before 300", a.Err, a.Received)
		}
	})
	t.Run("stall after write", func(t *testing.T) {
		b := startOn(t, Fault{StallAfterWrite: 400})
		c := client(t, b.URL)
		c.HTTP.Timeout = 300 * time.Millisecond
		a := c.Do(context.Background(), Request{N: 100000})
		var ne net.Error
		if !errors.As(a.Err, &ne) || !ne.Timeout() {
			t.Fatalf("err = %v, want a timeout", a.Err)
		}
	})
}

func TestDialer(t *testing.T) {
	b := startOn(t, Fault{})
	d := &Dialer{TimeoutAfter: 50 * time.Millisecond}
	ctx := context.Background()
	c, err := d.DialContext(ctx, "tcp", b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()

	d.Refuse(b.Addr)
	_, err = d.DialContext(ctx, "tcp", b.Addr)
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("refused dial: %v; want a dial OpError wrapping ECONNREFUSED", err)
	}
	d.Timeout(b.Addr)
	_, err = d.DialContext(ctx, "tcp", b.Addr)
	var ne net.Error
	if !errors.As(err, &op) || op.Op != "dial" || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("timed-out dial: %v; want a dial timeout", err)
	}
	d.Heal(b.Addr)
	if c, err := d.DialContext(ctx, "tcp", b.Addr); err != nil {
		t.Fatal(err)
	} else {
		c.Close()
	}
	// TEST-NET-3: refused before any packet could leave.
	if _, err := d.DialContext(ctx, "tcp", "203.0.113.7:80"); err == nil {
		t.Fatal("dialed outside loopback")
	}
	if got := d.Count(b.Addr); got != 4 {
		t.Fatalf("Count = %d, want 4", got)
	}
	if out := d.Outside(b.Addr); len(out) != 1 || out[0] != "203.0.113.7:80" {
		t.Fatalf("Outside = %v", out)
	}
	for _, a := range []string{"127.0.0.1:1", "[::1]:2", "localhost:3", "127.9.9.9"} {
		if !IsLoopback(a) {
			t.Errorf("IsLoopback(%q) = false", a)
		}
	}
	for _, a := range []string{"10.0.0.1:1", "169.254.169.254:80", "example.com:80", "[::ffff:8.8.8.8]:53"} {
		if IsLoopback(a) {
			t.Errorf("IsLoopback(%q) = true", a)
		}
	}
}

func TestBackendKillRestart(t *testing.T) {
	b := startOn(t, Fault{})
	c := client(t, b.URL)
	if a := c.Do(context.Background(), Request{N: 5}); !a.OK() {
		t.Fatalf("%+v", a)
	}
	addr := b.Addr
	b.Kill()
	if a := c.Do(context.Background(), Request{N: 5}); a.Err == nil {
		t.Fatal("a killed backend answered")
	}
	if err := b.Restart(); err != nil {
		t.Fatal(err)
	}
	if b.Addr != addr {
		t.Fatalf("restarted on %s, was %s", b.Addr, addr)
	}
	if a := c.Do(context.Background(), Request{N: 5}); !a.OK() {
		t.Fatalf("after restart: %+v", a)
	}
	b.KillReset()
	if err := b.Restart(); err != nil {
		t.Fatal(err)
	}
	if a := c.Do(context.Background(), Request{N: 5}); !a.OK() {
		t.Fatalf("after second restart: %+v", a)
	}
	if b.NewConns() < 2 {
		t.Fatalf("NewConns = %d", b.NewConns())
	}
}

func TestBackendAnswersAndRecords(t *testing.T) {
	b := startOn(t, Fault{})
	c := client(t, b.URL)
	a := c.Do(context.Background(), Request{ID: "p1", Body: 5000, N: 700})
	if !a.OK() || a.Method != http.MethodPost || a.Backend != "b" || a.EchoSHA != RequestBodySHA("p1", 5000) {
		t.Fatalf("%+v", a)
	}
	if b.Hits("p1") != 1 || len(b.Bodies("p1")) != 1 || b.Bodies("p1")[0] != a.SentSHA {
		t.Fatalf("hits %d bodies %v", b.Hits("p1"), b.Bodies("p1"))
	}
	s := b.SeenID("p1")
	if len(s) != 1 || s[0].BodyLen != 5000 || s[0].Header.Get(HeaderID) != "p1" {
		t.Fatalf("seen %+v", s)
	}
	if a := c.Do(context.Background(), Request{N: 100000, Stream: true}); !a.OK() {
		t.Fatalf("stream: %+v", a)
	}
	if a := c.Do(context.Background(), Request{N: 100, Query: "trailer=1"}); !a.OK() || a.Trailer.Get(TrailerBodySHA) != BodySHA(a.ID, 100) {
		t.Fatalf("trailer: %+v", a)
	}
	b.SetBehavior(Behavior{Status: 503, Header: http.Header{"X-Extra": {"1"}}})
	if a := c.Do(context.Background(), Request{N: 10}); a.Status != 503 || a.Header.Get("X-Extra") != "1" || !a.BodyOK {
		t.Fatalf("status: %+v", a)
	}
}

func TestBackendBehaviors(t *testing.T) {
	t.Run("reset after body", func(t *testing.T) {
		b := startOn(t, Fault{})
		b.SetBehavior(Behavior{ResetAfterBody: true})
		a := client(t, b.URL).Do(context.Background(), Request{ID: "x", Body: 1024})
		if a.Err == nil || b.Hits("x") != 1 || len(b.Bodies("x")) != 1 {
			t.Fatalf("err %v hits %d", a.Err, b.Hits("x"))
		}
	})
	t.Run("reset after fraction", func(t *testing.T) {
		b := startOn(t, Fault{})
		b.SetBehavior(Behavior{ResetAfterFraction: 0.4})
		a := client(t, b.URL).Do(context.Background(), Request{N: 100000})
		if a.Err == nil || a.Status != 200 || a.Received != 40000 {
			t.Fatalf("status %d err %v received %d; want 200, an error, 40000", a.Status, a.Err, a.Received)
		}
	})
	t.Run("stall after headers and cancel", func(t *testing.T) {
		b := startOn(t, Fault{})
		b.SetBehavior(Behavior{StallAfterHeaders: true})
		a := client(t, b.URL).Do(context.Background(), Request{ID: "s", N: 10, CancelAfter: -1})
		if !a.Canceled || a.Err == nil {
			t.Fatalf("%+v", a)
		}
		deadline := time.Now().Add(2 * time.Second)
		for {
			if _, ok := b.CanceledAt("s"); ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the backend never saw the cancel")
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	t.Run("drip", func(t *testing.T) {
		b := startOn(t, Fault{})
		b.SetBehavior(Behavior{Drip: time.Millisecond})
		if a := client(t, b.URL).Do(context.Background(), Request{N: 20}); !a.OK() {
			t.Fatalf("%+v", a)
		}
	})
	t.Run("close after response", func(t *testing.T) {
		b := startOn(t, Fault{})
		b.SetBehavior(Behavior{CloseAfterResponse: true})
		c := client(t, b.URL)
		for range 5 {
			if a := c.Do(context.Background(), Request{N: 20}); !a.OK() {
				t.Fatalf("%+v", a)
			}
			time.Sleep(5 * time.Millisecond) // let the client see the close
		}
		if b.NewConns() != 5 {
			t.Fatalf("NewConns = %d, want 5", b.NewConns())
		}
	})
	t.Run("hang released", func(t *testing.T) {
		b := startOn(t, Fault{})
		b.SetBehavior(Behavior{Hang: true})
		done := make(chan Attempt)
		go func() { done <- client(t, b.URL).Do(context.Background(), Request{N: 1}) }()
		for b.InFlight() == 0 {
			time.Sleep(time.Millisecond)
		}
		b.Release()
		// After a hang is released the handler returns without answering:
		// the server then sends an empty 200.
		<-done
	})
}

func TestBackendWebSocketEcho(t *testing.T) {
	b := startOn(t, Fault{})
	c, err := net.Dial("tcp", b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("status %d accept %q", resp.StatusCode, resp.Header.Get("Sec-WebSocket-Accept"))
	}
	io.WriteString(c, "hello\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "hello\n" {
		t.Fatalf("echo %q, %v", line, err)
	}
	if b.WebSockets() != 1 {
		t.Fatalf("WebSockets = %d", b.WebSockets())
	}
	b.CloseWebSockets()
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("read after CloseWebSockets")
	}
}

func TestClientFindsBreaches(t *testing.T) {
	// A server that mixes answers up: it answers with the body of another
	// ID, echoes the wrong ID, or cuts a body short while claiming it whole.
	mode := ""
	srv, err := NewBackend(Config{Name: "liar", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(HeaderID)
		w.Header().Set(HeaderBackend, "liar")
		switch mode {
		case "wrong-body":
			w.Header().Set(HeaderID, id)
			w.Write(Body("someone-else", 10))
		case "wrong-id":
			w.Header().Set(HeaderID, "someone-else")
			w.Write(Body(id, 10))
		case "short":
			w.Header().Set(HeaderID, id)
			w.Write(Body(id, 5))
		case "twice":
			w.Header().Set(HeaderID, id)
			w.Write(Body(id, 10))
		}
	})})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := client(t, srv.URL)
	for _, m := range []string{"wrong-body", "wrong-id", "short"} {
		mode = m
		a := c.Do(context.Background(), Request{N: 10})
		if a.Breach() == "" {
			t.Errorf("%s: no breach found in %+v", m, a)
		}
	}
	mode = "twice"
	a := c.Do(context.Background(), Request{ID: "dup", Body: 10, N: 10})
	c.Do(context.Background(), Request{ID: "dup", Body: 10, N: 10})
	if a.Breach() != "" {
		t.Fatalf("breach in an honest answer: %s", a.Breach())
	}
	if got := AtMostOnce(c.Attempts(), srv); len(got) == 0 || !strings.Contains(got[0], "2 times") {
		t.Fatalf("AtMostOnce = %v", got)
	}
	s := Summarize(c.Attempts())
	if s.Requests != 5 || len(s.Breaches) != 3 {
		t.Fatalf("%v", s)
	}
}

func TestLoadRun(t *testing.T) {
	b := startOn(t, Fault{})
	c := client(t, b.URL)
	n := c.Run(context.Background(), Load{Workers: 4, Count: 100, Next: func(w, i int) Request {
		return Request{N: int64(i), Body: int64(i % 3 * 100)}
	}})
	s := Summarize(c.Attempts())
	if n != 100 || s.Requests != 100 || s.OK != 100 {
		t.Fatalf("n %d: %v", n, s)
	}
	// net/http may dial one more connection while another is being put
	// back idle; twice the workers is the bound L5 uses.
	if b.NewConns() > 8 {
		t.Fatalf("%d connections for 4 workers", b.NewConns())
	}
}

func TestRawServerAndFDs(t *testing.T) {
	before := FDCount()
	if before <= 0 {
		t.Skip("no /proc/self/fd")
	}
	s, err := NewRawServer(func(c net.Conn, br *bufio.Reader) {
		req, _, err := ReadRequest(br)
		if err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Path: "+req.URL.Path+"\r\n\r\nhi")
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := RawExchange(s.Addr(), []byte("GET /abc HTTP/1.1\r\nHost: x\r\n\r\n"), 100*time.Millisecond)
	if err != nil || !bytes.Contains(out, []byte("X-Path: /abc")) {
		t.Fatalf("%q %v", out, err)
	}
	s.Close()
	if after := FDCount(); after > before+2 {
		t.Fatalf("fds %d -> %d", before, after)
	}
}
