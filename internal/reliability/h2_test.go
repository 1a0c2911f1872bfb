package reliability

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tinylb/lb/internal/faultkit"
)

// A few HTTP/2 frames written by hand: Go's own client will not send
// malformed or abusive traffic, and the suite uses the standard library
// only (no x/net Framer).

const (
	h2Headers      = 0x1
	h2RSTStream    = 0x3
	h2Settings     = 0x4
	h2GoAway       = 0x7
	h2Continuation = 0x9

	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
)

func h2Frame(typ, flags byte, stream uint32, payload []byte) []byte {
	f := make([]byte, 9, 9+len(payload))
	f[0], f[1], f[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	f[3], f[4] = typ, flags
	binary.BigEndian.PutUint32(f[5:], stream&0x7fffffff)
	return append(f, payload...)
}

// hpackInt encodes i with an n-bit prefix (RFC 7541 §5.1), first byte
// ORed with mask.
func hpackInt(mask byte, n uint, i int) []byte {
	max := 1<<n - 1
	if i < max {
		return []byte{mask | byte(i)}
	}
	out := []byte{mask | byte(max)}
	i -= max
	for i >= 128 {
		out = append(out, byte(i%128+128))
		i /= 128
	}
	return append(out, byte(i))
}

func hpackString(s string) []byte { return append(hpackInt(0, 7, len(s)), s...) }

// hpackLiteral is a literal header field without indexing, new name.
func hpackLiteral(name, value string) []byte {
	b := []byte{0}
	b = append(b, hpackString(name)...)
	return append(b, hpackString(value)...)
}

// hpackGET encodes GET http://x<path> with an x-req-id.
func hpackGET(path, id string) []byte {
	b := []byte{0x82, 0x86}             // :method GET, :scheme http
	b = append(b, 0x04)                 // :path, literal without indexing, indexed name 4
	b = append(b, hpackString(path)...) //
	b = append(b, 0x01)                 // :authority, indexed name 1
	b = append(b, hpackString("x")...)  //
	return append(b, hpackLiteral("x-req-id", id)...)
}

// h2Conn opens an h2c (prior knowledge) connection to addr and drains
// what the server sends, noting a GOAWAY or the end of the connection.
type h2Conn struct {
	net.Conn
	goaway atomic.Bool
	ended  chan struct{}
}

func dialH2(t *testing.T, addr string) *h2Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	h := &h2Conn{Conn: c, ended: make(chan struct{})}
	t.Cleanup(func() { c.Close(); <-h.ended })
	io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	c.Write(h2Frame(h2Settings, 0, 0, nil))
	c.Write(h2Frame(h2Settings, flagAck, 0, nil))
	go func() {
		defer close(h.ended)
		br := bufio.NewReader(c)
		hdr := make([]byte, 9)
		for {
			if _, err := io.ReadFull(br, hdr); err != nil {
				return
			}
			n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
			if hdr[3] == h2GoAway {
				h.goaway.Store(true)
			}
			if _, err := io.CopyN(io.Discard, br, int64(n)); err != nil {
				return
			}
		}
	}()
	return h
}

// h2Front adjusts the front server to speak h2c as well as HTTP/1.
func h2Front(s *http.Server) {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	s.Protocols = p
}

// B5 (HTTP/2): a CONTINUATION flood (CVE-2023-45288) is cut off by the
// server, and the balancer never dials a backend for it.
func TestB5_H2ContinuationFlood(t *testing.T) {
	e := newEnv(t, envConfig{n: 1, frontServer: h2Front})
	h := dialH2(t, e.front.Addr)
	block := hpackGET("/flood", "flood")
	h.Write(h2Frame(h2Headers, flagEndStream, 1, block))
	filler := hpackLiteral("x-filler", strings.Repeat("f", 1000))
	sent := 0
	for range scale(3000, 20000) {
		if _, err := h.Write(h2Frame(h2Continuation, 0, 1, filler)); err != nil {
			break
		}
		sent++
	}
	select {
	case <-h.ended:
	case <-time.After(5 * time.Second):
		t.Errorf("B5: the server still holds the connection after %d CONTINUATION frames", sent)
	}
	if !h.goaway.Load() {
		t.Logf("B5: connection closed without a GOAWAY")
	}
	if n := e.dialer.Total(); n != 0 || e.backends[0].Requests() != 0 {
		t.Errorf("B5: the flood reached the balancer: %d dials, %d backend requests", n, e.backends[0].Requests())
	}
	// The server still serves others, over HTTP/2 too.
	if a := e.do(faultkit.Request{N: 10}); !a.OK() {
		t.Errorf("B5: after the flood: %+v", a)
	}
	t.Logf("B5: connection cut after %d CONTINUATION frames (%d KiB of headers), GOAWAY %v", sent, sent*len(filler)>>10, h.goaway.Load())
}

// S8: HTTP/2 rapid reset (CVE-2023-44487): HEADERS then RST_STREAM, many
// times on one connection. Backend concurrency stays within the server's
// stream limit; every reset request is canceled at the backend; no
// failure is counted; goroutines return to their baseline.
func TestS8_H2RapidReset(t *testing.T) {
	e := newEnv(t, envConfig{n: 2, frontServer: h2Front})
	for _, b := range e.backends {
		b.SetBehavior(faultkit.Behavior{Hang: true})
	}
	base := runtime.NumGoroutine()
	h := dialH2(t, e.front.Addr)
	n := scale(1000, 10000)
	rst := make([]byte, 4)
	binary.BigEndian.PutUint32(rst, 0x8) // CANCEL
	var batch []byte
	for i := range n {
		id := uint32(2*i + 1)
		batch = append(batch, h2Frame(h2Headers, flagEndStream|flagEndHeaders, id, hpackGET("/r", "rr"))...)
		batch = append(batch, h2Frame(h2RSTStream, 0, id, rst)...)
		if len(batch) > 32<<10 {
			if _, err := h.Write(batch); err != nil {
				break
			}
			batch = batch[:0]
		}
	}
	h.Write(batch)
	time.Sleep(200 * time.Millisecond)
	h.Close()
	<-h.ended
	var arrived, most int64
	for _, b := range e.backends {
		arrived += b.Requests()
		most = max(most, b.MaxInFlight())
	}
	if most > 250 {
		t.Errorf("S8: a backend handled %d reset requests at once (MaxConcurrentStreams is 250)", most)
	}
	mustWait(t, 3*time.Second, "reset requests canceled at the backends", func() bool {
		return e.backends[0].InFlight()+e.backends[1].InFlight() == 0
	})
	st := e.bal.Stats()
	if st.Failures != 0 || st.Retries != 0 || st.Failed != 0 {
		t.Errorf("S8: resets counted: %d failures, %d retries, %d failed", st.Failures, st.Retries, st.Failed)
	}
	for _, s := range st.Backends {
		if s.State.String() != "up" {
			t.Errorf("S8: %s is %v after the attack", s.URL, s.State)
		}
	}
	// Backend connections of requests that were still finishing go back to
	// the pool idle, later: those are pooled, not leaked, so close the idle
	// ones on every look.
	ok := waitFor(t, 2*time.Second, "goroutines back to baseline", func() bool {
		e.tr.CloseIdleConnections()
		return runtime.NumGoroutine() <= base+5
	})
	if !ok {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Errorf("S8: %d goroutines 2 s after the attack, %d before\n%s", runtime.NumGoroutine(), base, buf)
	}
	t.Logf("S8: %d HEADERS+RST_STREAM pairs; %d reached a backend, at most %d at once; GOAWAY %v", n, arrived, most, h.goaway.Load())
}
