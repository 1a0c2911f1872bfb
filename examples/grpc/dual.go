package main

import (
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// A dual backend serves gRPC and WebSocket on one port, as backends behind
// one balancer under lb.BackendHTTP2ForGRPC do: the balancer sends gRPC
// calls over HTTP/2 (h2c) and WebSocket handshakes over HTTP/1.1, since
// HTTP/2 has no Upgrade. grpc-go's own server (grpc.Server.Serve) speaks
// HTTP/2 only and would refuse the handshake, so the port is a net/http
// server that speaks both, HTTP/1.1 and unencrypted HTTP/2, and hands the
// gRPC calls to the grpc.Server's ServeHTTP (grpc-go's http.Handler mode,
// which serves calls that arrive over HTTP/2 only) and the rest to a
// WebSocket-style echo.
//
// The echo does the WebSocket opening handshake (RFC 6455 §4.2: it checks
// the request's Upgrade, Connection, Sec-WebSocket-Version and
// Sec-WebSocket-Key, and answers 101 with the Sec-WebSocket-Accept the
// client expects), then sends back every byte it gets, as they come: it
// does not parse frames, so a WebSocket client's frames come back as it
// sent them, masked, which a real WebSocket client would refuse, but
// which shows that the balancer tunnels the connection both ways.

// dualState is what a dual backend keeps beyond a backend's: the requests
// it has seen and the connections it has hijacked.
type dualState struct {
	mu       sync.Mutex
	seen     []string // "<path> <protocol>", in order
	tunnels  map[net.Conn]struct{}
	stopping bool
	wg       sync.WaitGroup // echo handlers
}

// startDualBackend starts a backend that serves the Echo and health
// services (over HTTP/2) and a WebSocket echo (over HTTP/1.1) on one
// port.
func startDualBackend(name string) (*backend, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := newBackend(name, ln, true)
	b.dual = &dualState{tunnels: make(map[net.Conn]struct{})}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	b.http = &http.Server{Handler: http.HandlerFunc(b.serveDual), Protocols: &protocols, ReadHeaderTimeout: 10 * time.Second}
	go func() { b.served <- b.http.Serve(ln) }()
	return b, nil
}

// startDualBackends starts one dual backend per name.
func startDualBackends(names ...string) (backends, error) {
	var bs backends
	for _, name := range names {
		b, err := startDualBackend(name)
		if err != nil {
			bs.stop()
			return nil, err
		}
		bs = append(bs, b)
	}
	return bs, nil
}

// serveDual sends gRPC calls to the grpc.Server and WebSocket handshakes
// to the echo, and notes the protocol each came over.
func (b *backend) serveDual(w http.ResponseWriter, r *http.Request) {
	b.dual.note(r.URL.Path + " " + r.Proto)
	if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
		b.srv.ServeHTTP(w, r)
		return
	}
	b.serveWebSocket(w, r)
}

// seen returns the requests the backend has served, each as
// "<path> <protocol>".
func (b *backend) seen() []string {
	b.dual.mu.Lock()
	defer b.dual.mu.Unlock()
	return append([]string(nil), b.dual.seen...)
}

func (d *dualState) note(s string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seen = append(d.seen, s)
}

// serveWebSocket answers a WebSocket handshake with 101 and echoes the
// connection's bytes until the client closes it or the backend stops.
func (b *backend) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if r.Method != http.MethodGet || !hasToken(r.Header.Values("Connection"), "upgrade") ||
		!strings.EqualFold(r.Header.Get("Upgrade"), "websocket") ||
		r.Header.Get("Sec-WebSocket-Version") != "13" || key == "" {
		http.Error(w, "not a WebSocket handshake", http.StatusBadRequest)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "cannot take the connection: "+err.Error(), http.StatusInternalServerError)
		return
	}
	if !b.dual.track(conn) {
		conn.Close()
		return
	}
	defer b.dual.untrack(conn)
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", webSocketAccept(key))
	if err := brw.Flush(); err != nil {
		return
	}
	_, _ = io.Copy(conn, brw.Reader) // whatever the client sent after the handshake first
}

// track takes a hijacked connection in, unless the backend is stopping.
func (d *dualState) track(c net.Conn) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopping {
		return false
	}
	d.tunnels[c] = struct{}{}
	d.wg.Add(1)
	return true
}

func (d *dualState) untrack(c net.Conn) {
	c.Close()
	d.mu.Lock()
	delete(d.tunnels, c)
	d.mu.Unlock()
	d.wg.Done()
}

// stopDual closes the HTTP server and its connections, the hijacked ones
// (which the server no longer knows), and the grpc.Server's calls, and
// waits for the echoes to end and Serve to return.
func (b *backend) stopDual() error {
	err := b.http.Close()
	d := b.dual
	d.mu.Lock()
	d.stopping = true
	for c := range d.tunnels {
		c.Close()
	}
	d.mu.Unlock()
	d.wg.Wait()
	b.srv.Stop()
	if serr := <-b.served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return fmt.Errorf("backend %s: %w", b.name, err)
	}
	return nil
}

// webSocketAccept is the Sec-WebSocket-Accept for a Sec-WebSocket-Key
// (RFC 6455 §4.2.2).
func webSocketAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// hasToken reports whether a comma-separated header's values hold token,
// in any case.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
