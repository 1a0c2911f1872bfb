package lb

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
)

// replayBody shields a request body from the transport's Close (which
// would end it for a retry) and lets it be sent again on a retry. The bytes
// read from the client are kept, up to limit, as they stream to the first
// backend; a later attempt replays them and then goes on reading from the
// client.
//
// Only one reader reads from the client at a time (readMu); the kept bytes
// are guarded by mu, which is never held while waiting for the client. An
// earlier attempt's reader that is still waiting in the client's Read when
// a retry starts keeps what it gets for the new attempt (even past limit:
// those bytes are gone from the client otherwise) and then stops.
type replayBody struct {
	src   io.ReadCloser
	limit int64
	fill  bool // the body has a known length: see readSrc

	read      atomic.Int64          // bytes read from src
	overflow  atomic.Bool           // bytes were read and not kept: no replay
	clientErr atomic.Pointer[error] // a read error from the client's body

	readMu sync.Mutex // serializes reads of src

	mu     sync.Mutex // guards buf, srcErr and gen
	buf    []byte     // the bytes read from src, while they fit in limit
	srcErr error      // sticky error (io.EOF at the end) from src
	gen    int        // the attempt allowed to read

	first replayReader // the first attempt's reader, saving an allocation
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

func (rb *replayBody) sentBytes() int64 { return rb.read.Load() }

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
		again := r.gen != rb.gen || r.off < int64(len(rb.buf)) || rb.srcErr != nil
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
		if !rb.overflow.Load() {
			if stale || int64(len(rb.buf)+n) <= rb.limit {
				rb.buf = append(rb.buf, p[:n]...)
			} else {
				rb.overflow.Store(true)
				rb.buf = nil
			}
		}
		if err != nil {
			rb.srcErr = err
		}
		rb.mu.Unlock()
		rb.readMu.Unlock()
		if stale {
			return 0, errStaleBody
		}
		r.off += int64(n)
		return n, err
	}
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
	case r.gen != rb.gen || r.closed.Load():
		return 0, errStaleBody, true
	case r.off < int64(len(rb.buf)):
		n = copy(p, rb.buf[r.off:])
		r.off += int64(n)
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
