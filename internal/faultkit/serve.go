package faultkit

import (
	"bufio"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// wait blocks for d (forever if d < 0) or until the request is canceled,
// Release is called or the backend is closed. It reports whether the
// request was canceled.
func (b *Backend) wait(r *http.Request, d time.Duration) (canceled bool) {
	var tc <-chan time.Time
	if d >= 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		tc = t.C
	}
	select {
	case <-tc:
		return false
	case <-*b.release.Load():
		return false
	case <-b.stop:
		return false
	case <-r.Context().Done():
		b.mu.Lock()
		b.canceled[r.Header.Get(HeaderID)] = time.Now()
		b.mu.Unlock()
		return true
	}
}

// serve is the backend's handler: it records the request, then answers as
// its Behavior says.
func (b *Backend) serve(w http.ResponseWriter, r *http.Request) {
	b.handlers.Add(1)
	defer b.handlers.Done()
	bh := *b.behavior.Load()
	if r.URL.Path == HealthPath {
		b.serveHealth(w, bh)
		return
	}
	id := r.Header.Get(HeaderID)
	b.count(r, id)
	defer b.inflight.Add(-1)
	if f := b.onRequest.Load(); f != nil {
		(*f)(r)
	}
	if b.cfg.Handler != nil {
		b.cfg.Handler.ServeHTTP(w, r)
		return
	}
	if isUpgrade(r) {
		b.serveUpgrade(w, r, bh)
		return
	}
	if bh.SkipBody {
		http.NewResponseController(w).EnableFullDuplex()
	}
	rec := b.record(r, id, bh)
	if rec.BodyErr != nil {
		return // the client's body broke: nobody to answer
	}
	if bh.ResetAfterBody {
		b.abort(w)
		return
	}
	if bh.Hang {
		b.wait(r, -1)
		return
	}
	if bh.Delay > 0 && b.wait(r, bh.Delay) {
		return
	}
	b.answer(w, r, bh, rec)
}

func (b *Backend) serveHealth(w http.ResponseWriter, bh Behavior) {
	b.healthHits.Add(1)
	st := bh.HealthStatus
	if st == 0 {
		st = http.StatusOK
	}
	w.Header().Set(HeaderBackend, b.Name)
	w.WriteHeader(st)
	io.WriteString(w, "ok")
}

// count counts a request in the totals and in flight (the caller takes it
// out of flight).
func (b *Backend) count(r *http.Request, id string) {
	b.requests.Add(1)
	n := b.inflight.Add(1)
	for {
		m := b.maxInflight.Load()
		if n <= m || b.maxInflight.CompareAndSwap(m, n) {
			break
		}
	}
	lean := b.cfg.Lean && (r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodPut)
	b.mu.Lock()
	if !lean {
		b.hits[id]++
	}
	b.paths[r.URL.Path]++
	b.mu.Unlock()
}

// record reads the request's body (unless the behaviour skips it) and
// keeps what Seen and Bodies report.
func (b *Backend) record(r *http.Request, id string, bh Behavior) Seen {
	rec := Seen{ID: id, Method: r.Method, Host: r.Host, RequestURI: r.RequestURI,
		RemoteAddr: r.RemoteAddr, Proto: r.Proto, Time: time.Now()}
	if !bh.SkipBody {
		h := sha256.New()
		rec.BodyLen, rec.BodyErr = io.Copy(h, r.Body)
		rec.BodySHA = hex.EncodeToString(h.Sum(nil))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !bh.SkipBody && rec.BodyErr == nil && !b.cfg.Lean {
		b.bodies[id] = append(b.bodies[id], rec.BodySHA)
	}
	if b.cfg.Keep {
		rec.Header = r.Header.Clone()
		rec.Trailer = r.Trailer.Clone()
		b.seen = append(b.seen, rec)
	}
	return rec
}

// answer writes the response: n bytes (query n, default 32) of the
// request's deterministic body, streamed, dripped, with a trailer or cut
// short as the query and the behaviour say.
func (b *Backend) answer(w http.ResponseWriter, r *http.Request, bh Behavior, rec Seen) {
	id := rec.ID
	q := r.URL.Query()
	size := int64(32)
	if v, err := strconv.ParseInt(q.Get("n"), 10, 64); err == nil && v >= 0 {
		size = v
	}
	hdr := w.Header()
	for k, v := range bh.Header {
		hdr[k] = slices.Clone(v)
	}
	hdr.Set(HeaderID, id)
	hdr.Set(HeaderBackend, b.Name)
	if !bh.SkipBody {
		hdr.Set(HeaderBodySHA, rec.BodySHA)
		hdr.Set(HeaderBodyLen, strconv.FormatInt(rec.BodyLen, 10))
	}
	status := bh.Status
	if status == 0 {
		status = http.StatusOK
	}
	rc := http.NewResponseController(w)
	if r.URL.Path == "/sse" {
		b.serveSSE(w, r, rc)
		return
	}
	stream := q.Get("stream") == "1" || bh.Drip > 0
	trailer := q.Get("trailer") == "1"
	if trailer {
		hdr.Set("Trailer", TrailerBodySHA)
	} else if !stream {
		hdr.Set("Content-Length", strconv.FormatInt(size, 10))
	}
	if bh.StallAfterHeaders {
		w.WriteHeader(status)
		rc.Flush()
		b.wait(r, -1)
		return
	}
	if f := bh.ResetAfterFraction; f > 0 && f < 1 {
		hdr.Set("Content-Length", strconv.FormatInt(size, 10))
		w.WriteHeader(status)
		WriteBody(w, id, int64(f*float64(size)))
		rc.Flush()
		b.abort(w)
		return
	}
	w.WriteHeader(status)
	if !b.writeBody(w, r, rc, bh, id, size, stream) {
		return
	}
	if trailer {
		hdr.Set(TrailerBodySHA, BodySHA(id, size))
	}
	if bh.CloseAfterResponse {
		rc.Flush()
		if c, _, err := rc.Hijack(); err == nil {
			c.Close()
		}
	}
}

// writeBody writes the response body, dripped a byte at a time, streamed
// in flushed pieces, or at once. It reports false if the client went away.
func (b *Backend) writeBody(w http.ResponseWriter, r *http.Request, rc *http.ResponseController, bh Behavior, id string, size int64, stream bool) bool {
	switch {
	case bh.Drip > 0:
		body := BodyReader(id, size)
		one := make([]byte, 1)
		for i := int64(0); i < size; i++ {
			body.Read(one)
			if _, err := w.Write(one); err != nil {
				return false
			}
			rc.Flush()
			if i+1 < size && b.wait(r, bh.Drip) {
				return false
			}
		}
	case stream:
		body := BodyReader(id, size)
		buf := make([]byte, 4096)
		for {
			m, _ := body.Read(buf)
			if m == 0 {
				break
			}
			if _, err := w.Write(buf[:m]); err != nil {
				return false
			}
			rc.Flush()
		}
	default:
		WriteBody(w, id, size)
	}
	return true
}

// abort resets the connection of w without answering further.
func (b *Backend) abort(w http.ResponseWriter) {
	c, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	Reset(c)
}

// serveSSE sends events=N events ("data: <seq> <unix nanos>"), one every
// every=D (default 10ms).
func (b *Backend) serveSSE(w http.ResponseWriter, r *http.Request, rc *http.ResponseController) {
	q := r.URL.Query()
	events, _ := strconv.Atoi(q.Get("events"))
	every, err := time.ParseDuration(q.Get("every"))
	if err != nil {
		every = 10 * time.Millisecond
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc.Flush()
	for i := 0; i < events; i++ {
		if i > 0 && b.wait(r, every) {
			return
		}
		if _, err := fmt.Fprintf(w, "data: %d %d\n\n", i, time.Now().UnixNano()); err != nil {
			return
		}
		rc.Flush()
	}
}

func isUpgrade(r *http.Request) bool {
	for _, v := range r.Header["Connection"] {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), "upgrade") {
				return r.Header.Get("Upgrade") != ""
			}
		}
	}
	return false
}

// wsGUID is RFC 6455's key suffix.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// WebSocketAccept returns the Sec-WebSocket-Accept value for key.
func WebSocketAccept(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// serveUpgrade answers a WebSocket handshake with 101 and then echoes every
// byte it reads (the suite does not need WebSocket framing: the balancer
// tunnels bytes) until the peer closes.
func (b *Backend) serveUpgrade(w http.ResponseWriter, r *http.Request, bh Behavior) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if bh.RefuseUpgrade {
		w.Header().Set(HeaderBackend, b.Name)
		w.Header().Set(HeaderID, r.Header.Get(HeaderID))
		io.WriteString(w, "no upgrade here")
		return
	}
	if key == "" {
		http.Error(w, "missing Sec-WebSocket-Key", http.StatusBadRequest)
		return
	}
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	b.mu.Lock()
	if b.srv == nil {
		b.mu.Unlock()
		c.Close()
		return
	}
	b.hijacked[c] = struct{}{}
	b.mu.Unlock()
	b.wsOpen.Add(1)
	defer func() {
		b.wsOpen.Add(-1)
		b.mu.Lock()
		delete(b.hijacked, c)
		b.mu.Unlock()
		c.Close()
	}()
	up := bh.Upgrade
	if up == "" {
		up = r.Header.Get("Upgrade")
	}
	var sb strings.Builder
	sb.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n")
	if up != "-" {
		sb.WriteString("Upgrade: " + up + "\r\n")
	}
	sb.WriteString("Sec-WebSocket-Accept: " + WebSocketAccept(key) + "\r\n")
	sb.WriteString(HeaderBackend + ": " + b.Name + "\r\n")
	sb.WriteString(HeaderID + ": " + r.Header.Get(HeaderID) + "\r\n\r\n")
	if _, err := brw.WriteString(sb.String()); err != nil {
		return
	}
	if err := brw.Flush(); err != nil {
		return
	}
	echo(c, brw.Reader)
}

// echo copies what r reads (starting with what br buffered) back to c,
// flushing each read, until either side fails.
func echo(c net.Conn, br *bufio.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := br.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// CloseWebSockets closes every upgraded connection the backend holds.
func (b *Backend) CloseWebSockets() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for c := range b.hijacked {
		c.Close()
	}
}
