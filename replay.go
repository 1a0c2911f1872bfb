package lb

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// replayBody stands for a client's request body from the moment the
// balancer takes the request: it shields the body from the transport's
// Close (which would end it for a retry), fails reads once the handler has
// returned (golang/go#46866), and lets the body be sent again on a retry.
// The bytes read from the client are kept, up to limit, as they stream to
// the first backend; a later attempt replays them and then goes on reading
// from the client. With request buffering the whole body is read into the
// kept bytes before the first attempt (prefetch).
//
// The kept bytes grow as they arrive, in chunks (see keptBytes), each
// reserved from the balancer's body memory first; when there is no room,
// the body streams on and is not kept. The reservation is
// given back once no retry can follow (freeze).
//
// Only one reader reads from the client at a time (readMu); the kept bytes
// are guarded by mu, which is never held while waiting for the client. An
// earlier attempt's reader that is still waiting in the client's Read when
// a retry starts keeps what it gets for the new attempt (even past limit:
// those bytes are gone from the client otherwise) and then stops.
type replayBody struct {
	src   io.ReadCloser
	limit int64 // bytes to keep for a replay
	size  int64 // the body's length, if known (Content-Length); else -1
	fill  bool  // the body has a known length: see readSrc
	mem   *bodyMemory

	read      atomic.Int64          // bytes read from src
	handed    atomic.Bool           // an attempt has read bytes: some may have gone out
	overflow  atomic.Bool           // bytes were read and not kept: no replay
	clientErr atomic.Pointer[error] // a read error from the client's body
	closed    atomic.Bool           // the handler returned: no more reads

	readMu sync.Mutex // serializes reads of src

	mu         sync.Mutex // guards the fields below
	buf        keptBytes  // the bytes read from src, while they fit in limit
	reserved   int64      // bytes of body memory buf holds (its chunks)
	srcErr     error      // sticky error (io.EOF at the end) from src
	gen        int        // the attempt allowed to read
	frozen     bool       // no retry can follow: keep nothing more
	prefetched bool       // the body was read ahead, into buf
	noRoom     bool       // the body memory had no room: counted once

	first replayReader // the first attempt's reader, saving an allocation
	spare trackedBody  // the first response's tracker, saving another
}

// newBody takes over r's body, if it has one (else it returns nil). It is
// kept for a replay only when the request may be retried after it was
// sent.
func (b *Balancer) newBody(r *http.Request) *replayBody {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil
	}
	pol := &b.o.retry
	rb := &replayBody{src: r.Body, size: r.ContentLength, fill: r.ContentLength > 0, mem: &b.mem}
	if (isIdempotent(r) || pol.NonIdempotent) && pol.Tries > 1 && r.Header.Get("Upgrade") == "" {
		rb.limit = pol.BodyBuffer
	}
	return rb
}

// bodyKey is the context key of a request's replayBody on ReverseProxy's
// path, which hands the transport the body wrapped in a type of its own.
type bodyKey struct{}

// keepLocked appends p to the kept bytes, adding chunks (each reserved
// from the body memory first) as needed. It reports false when there is no
// room; what was kept of p then is dropped with the rest by the caller.
func (rb *replayBody) keepLocked(p []byte) bool {
	for len(p) > 0 {
		room := rb.buf.room()
		if len(room) == 0 {
			if !rb.addChunkLocked() {
				return false
			}
			continue
		}
		n := copy(room, p)
		rb.buf.commit(n)
		p = p[n:]
	}
	return true
}

// addChunkLocked adds a chunk to the kept bytes if the body memory has
// room for it.
func (rb *replayBody) addChunkLocked() bool {
	left := int64(-1)
	if rb.size > 0 {
		left = rb.size - int64(rb.buf.n)
	}
	size := rb.buf.nextChunkSize(left)
	if !rb.mem.reserve(int64(size)) {
		return false
	}
	rb.reserved += int64(size)
	rb.buf.add(size)
	return true
}

// dropLocked lets the kept bytes go and gives back their reservation.
func (rb *replayBody) dropLocked() {
	rb.buf.release()
	rb.mem.free(rb.reserved)
	rb.reserved = 0
}

// noRoomLocked counts the request in Stats.Unbuffered, once.
func (rb *replayBody) noRoomLocked() {
	if !rb.noRoom {
		rb.noRoom = true
		rb.mem.unbuffered.Add(1)
	}
}

// freeze is called once no retry can follow (the attempt loop is over) or
// the request is over: nothing more is kept and the body memory is given
// back. The kept bytes themselves go at once unless an attempt may still
// be reading them (a replay or a prefetched body on its way out); those
// become garbage with the request.
func (rb *replayBody) freeze() {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	if rb.frozen {
		return
	}
	rb.frozen = true
	if rb.gen == 0 || rb.gen == 1 && (!rb.prefetched || rb.first.off >= int64(rb.buf.n)) {
		// No attempt, or the only one has all it needs: the first
		// attempt's reader appends what it reads itself, and reads the
		// kept bytes only of a body read ahead.
		rb.dropLocked()
		return
	}
	rb.mem.free(rb.reserved)
	rb.reserved = 0
}

// complete reports whether the whole body was read ahead.
func (rb *replayBody) complete() bool {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	return rb.prefetched && rb.srcErr == io.EOF
}

// Read is never used: each attempt reads through its own reader from
// next. It fails, so that nothing can read the body around them.
func (rb *replayBody) Read([]byte) (int, error) { return 0, errStaleBody }

// Close ends the request's use of the body, when the handler returns: a
// transport still writing it gets an error from then on. The client's body
// itself is the server's to close.
func (rb *replayBody) Close() error {
	rb.closed.Store(true)
	rb.freeze()
	return nil
}

// prefetch reads the whole body (of known length) before a backend is
// chosen, under a read deadline, so that a slow client holds no backend
// connection while it uploads: nginx's proxy_request_buffering. If the
// body memory has no room, it stops and the rest streams. It returns the
// client's error (a timeout, a body cut short).
func (rb *replayBody) prefetch(w http.ResponseWriter, timeout time.Duration) error {
	if timeout > 0 {
		rc := http.NewResponseController(w)
		if rc.SetReadDeadline(time.Now().Add(timeout)) == nil {
			defer func() {
				if rb.clientError() == nil {
					// Read in time: the rest of the exchange is not
					// bound by the body's deadline. After a timeout it
					// stays, and the server closes the connection.
					_ = rc.SetReadDeadline(time.Time{})
				}
			}()
		}
	}
	rb.readMu.Lock()
	defer rb.readMu.Unlock()
	rb.mu.Lock()
	defer rb.mu.Unlock()
	rb.prefetched = true
	for {
		room := rb.buf.room()
		if len(room) == 0 {
			if !rb.addChunkLocked() {
				rb.noRoomLocked()
				return nil // the rest streams
			}
			room = rb.buf.room()
		}
		n, err := rb.src.Read(room)
		rb.buf.commit(n)
		rb.read.Add(int64(n))
		if err == io.EOF {
			rb.srcErr = err
			if int64(rb.buf.n) > rb.limit {
				// Kept for the first attempt (and one that follows a
				// failed connect), but more than RetryPolicy.BodyBuffer
				// allows to be sent twice.
				rb.overflow.Store(true)
			}
			return nil
		}
		if err == nil && n == 0 {
			continue
		}
		if err != nil {
			rb.srcErr = err
			rb.noteClientErr(err)
			return err
		}
	}
}

// next returns the reader for a new attempt, invalidating earlier ones.
func (rb *replayBody) next() io.ReadCloser {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	rb.gen++
	if rb.gen == 1 {
		rb.first = replayReader{rb: rb, gen: 1}
		return &rb.first
	}
	return &replayReader{rb: rb, gen: rb.gen}
}

// replayable reports whether every byte read so far is kept. A nil body is
// trivially replayable.
func (rb *replayBody) replayable() bool {
	return rb == nil || !rb.overflow.Load()
}

// sent reports whether an attempt has read any of the body, which then may
// have reached a backend.
func (rb *replayBody) sent() bool { return rb.handed.Load() }

// clientError returns the error the client's body failed with, if it did:
// a malformed chunked body, a client that hung up mid-upload. Such a
// failure is the client's, not the backend's.
func (rb *replayBody) clientError() error {
	if rb == nil {
		return nil
	}
	if p := rb.clientErr.Load(); p != nil {
		return *p
	}
	return nil
}

var errBodyAfterHandler = errors.New("lb: read of the request body after the handler returned")

var errStaleBody = errors.New("lb: request body read by an abandoned attempt")

// replayReader is one attempt's view of a replayBody.
type replayReader struct {
	rb     *replayBody
	gen    int
	off    int64 // position in the body stream; touched only by this attempt
	closed atomic.Bool
}

func (r *replayReader) Read(p []byte) (int, error) {
	rb := r.rb
	for {
		if n, err, done := r.fromBuffer(p); done {
			return n, err
		}
		rb.readMu.Lock()
		// While waiting, an abandoned reader may have added bytes to the
		// buffer, or a retry may have replaced this reader: look again.
		rb.mu.Lock()
		again := r.gen != rb.gen || r.off < int64(rb.buf.n) || rb.srcErr != nil
		rb.mu.Unlock()
		if again {
			rb.readMu.Unlock()
			continue
		}
		n, err := rb.readSrc(p)
		rb.read.Add(int64(n))
		if err != nil && err != io.EOF {
			rb.noteClientErr(err)
		}
		rb.mu.Lock()
		stale := r.gen != rb.gen
		rb.keepOrDropLocked(p[:n], stale)
		if err != nil {
			rb.srcErr = err
		}
		if !stale {
			r.off += int64(n)
			if n > 0 {
				rb.handed.Store(true)
			}
		}
		rb.mu.Unlock()
		rb.readMu.Unlock()
		if stale {
			return 0, errStaleBody
		}
		return n, err
	}
}

// keepOrDropLocked keeps bytes just read from the client, if they are to
// be kept; once bytes cannot be kept (past limit, or no room in the body
// memory) nothing more is, and the request is not replayed. A stale
// reader's bytes are kept past limit: the new attempt needs them.
func (rb *replayBody) keepOrDropLocked(p []byte, stale bool) {
	if rb.overflow.Load() || len(p) == 0 || (rb.frozen && !stale) {
		return
	}
	if stale || int64(rb.buf.n+len(p)) <= rb.limit {
		if rb.keepLocked(p) {
			return
		}
		rb.noRoomLocked()
	}
	rb.overflow.Store(true)
	rb.dropLocked()
}

// readSrc reads from the client's body. A body of known length is read
// until p is full (or the body ends): the transport hands each read to a
// write on the backend connection, and the first read of a body returns
// just what the server had buffered with the headers, so without this a
// 64 KiB upload went out in three writes of 4, 32 and 28 KiB instead of
// two. Holding up to len(p) (32 KiB) of a fixed-length upload until the
// rest arrives changes nothing a backend can rely on; nginx holds whole
// bodies. A chunked body passes through as it comes, since it may be a
// stream.
func (rb *replayBody) readSrc(p []byte) (int, error) {
	n, err := rb.src.Read(p)
	for rb.fill && err == nil && n > 0 && n < len(p) {
		var m int
		m, err = rb.src.Read(p[n:])
		if m == 0 && err == nil {
			break // a reader that returns nothing: do not spin on it
		}
		n += m
	}
	return n, err
}

// fromBuffer serves a read from the kept bytes, or says why the reader
// cannot read; done is false when the next bytes must come from the client.
func (r *replayReader) fromBuffer(p []byte) (n int, err error, done bool) {
	rb := r.rb
	rb.mu.Lock()
	defer rb.mu.Unlock()
	switch {
	case rb.closed.Load():
		return 0, errBodyAfterHandler, true
	case r.gen != rb.gen || r.closed.Load():
		return 0, errStaleBody, true
	case r.off < int64(rb.buf.n):
		n = rb.buf.copyAt(p, int(r.off))
		r.off += int64(n)
		rb.handed.Store(true)
		if rb.frozen && rb.gen == 1 && r.off == int64(rb.buf.n) {
			rb.dropLocked() // all sent, and no attempt will follow
		}
		return n, nil, true
	case r.off < rb.read.Load():
		return 0, errStaleBody, true // bytes this attempt needs were not kept
	case rb.srcErr != nil:
		return 0, rb.srcErr, true
	}
	return 0, nil, false
}

func (rb *replayBody) noteClientErr(err error) {
	rb.clientErr.CompareAndSwap(nil, &err)
}

// Close ends this attempt's use of the body; the client's body itself is
// closed by ReverseProxy when the request is over.
func (r *replayReader) Close() error {
	r.closed.Store(true)
	return nil
}
