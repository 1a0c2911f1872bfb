package faultkit

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Kind is what a [Listener] does with a connection it accepts.
type Kind int

const (
	// Pass hands the connection to the server, with the Fault's toxics.
	Pass Kind = iota
	// CloseOnAccept closes the connection at once (a FIN, nothing read).
	CloseOnAccept
	// ResetOnAccept resets the connection at once (SO_LINGER 0: an RST).
	ResetOnAccept
	// Hang keeps the connection open, reading and discarding whatever
	// arrives and never writing, until the peer closes it or the listener
	// is closed: a backend that accepts and never answers.
	Hang
	// ResetAfterRead reads N bytes (N ≤ 0: up to the end of the request
	// headers), then resets the connection.
	ResetAfterRead
	// HalfCloseAfterRead reads N bytes (N ≤ 0: up to the end of the
	// request headers), then closes its write side (a FIN without any
	// answer) and keeps reading until the peer closes.
	HalfCloseAfterRead
)

var kindNames = [...]string{"pass", "close-on-accept", "reset-on-accept", "hang", "reset-after-read", "half-close-after-read"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Fault describes what a [Listener] does to the connections it accepts.
// The zero Fault passes connections through untouched.
type Fault struct {
	Kind Kind
	// N is the byte count of ResetAfterRead and HalfCloseAfterRead.
	N int

	// The toxics below apply to connections that are passed to the server.

	// ReadLatency and WriteLatency delay every Read and Write.
	ReadLatency, WriteLatency time.Duration
	// WriteChunk splits every Write into writes of at most this many bytes
	// (1: one byte at a time, toxiproxy's slicer), with WriteLatency before
	// each piece.
	WriteChunk int
	// ResetAfterWrite resets the connection once this many bytes were
	// written to it (toxiproxy's limit_data followed by reset_peer). Zero:
	// never.
	ResetAfterWrite int64
	// StallAfterWrite lets this many bytes through, then blocks every later
	// Write until the connection is closed. Zero: never.
	StallAfterWrite int64
}

// Listener is a net.Listener that applies a [Fault] to the connections it
// accepts. Connections it keeps itself (Hang, ResetAfterRead,
// HalfCloseAfterRead) are closed by Close, which waits for their
// goroutines.
type Listener struct {
	net.Listener

	fault    atomic.Pointer[Fault]
	accepted atomic.Int64

	mu     sync.Mutex
	held   map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// Listen listens on addr (such as "127.0.0.1:0") with no fault.
func Listen(addr string) (*Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return WrapListener(l), nil
}

// WrapListener wraps l with no fault.
func WrapListener(l net.Listener) *Listener {
	fl := &Listener{Listener: l, held: make(map[net.Conn]struct{})}
	fl.fault.Store(&Fault{})
	return fl
}

// SetFault changes the fault applied to connections accepted from now on.
func (l *Listener) SetFault(f Fault) { l.fault.Store(&f) }

// Fault returns the fault in effect.
func (l *Listener) Fault() Fault { return *l.fault.Load() }

// Accepted returns the number of connections accepted so far, faulty ones
// included.
func (l *Listener) Accepted() int64 { return l.accepted.Load() }

// Accept returns the next connection to pass to the server, dealing with
// the others itself.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.accepted.Add(1)
		f := *l.fault.Load()
		switch f.Kind {
		case Pass:
			if f.ReadLatency == 0 && f.WriteLatency == 0 && f.WriteChunk == 0 && f.ResetAfterWrite == 0 && f.StallAfterWrite == 0 {
				return c, nil
			}
			return newConn(c, f), nil
		case CloseOnAccept:
			c.Close()
		case ResetOnAccept:
			Reset(c)
		default:
			if !l.hold(c) {
				c.Close()
				continue
			}
			l.wg.Go(func() {
				defer l.release(c)
				serveFault(c, f)
			})
		}
	}
}

func (l *Listener) hold(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.held[c] = struct{}{}
	return true
}

func (l *Listener) release(c net.Conn) {
	l.mu.Lock()
	delete(l.held, c)
	l.mu.Unlock()
	c.Close()
}

// Close closes the listener and the connections it keeps, and waits for
// their goroutines. Connections passed to a server are the server's.
func (l *Listener) Close() error {
	err := l.Listener.Close()
	l.mu.Lock()
	l.closed = true
	for c := range l.held {
		c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
	return err
}

// serveFault runs a connection the listener keeps.
func serveFault(c net.Conn, f Fault) {
	switch f.Kind {
	case Hang:
		io.Copy(io.Discard, c)
	case ResetAfterRead:
		readN(c, f.N)
		Reset(c)
	case HalfCloseAfterRead:
		readN(c, f.N)
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		io.Copy(io.Discard, c)
	}
}

var headerEnd = []byte("\r\n\r\n")

// readN reads n bytes from c, or up to the end of the request headers
// when n ≤ 0. It stops early if c fails.
func readN(c net.Conn, n int) {
	if n > 0 {
		io.CopyN(io.Discard, c, int64(n))
		return
	}
	var seen []byte
	buf := make([]byte, 4096)
	for {
		m, err := c.Read(buf)
		seen = append(seen, buf[:m]...)
		if bytes.Contains(seen, headerEnd) || err != nil {
			return
		}
	}
}

// Reset closes c with SO_LINGER 0, so that the peer gets an RST instead
// of a FIN. It unwraps the connections of this package; a connection that
// is not TCP is just closed.
func Reset(c net.Conn) error {
	for {
		switch x := c.(type) {
		case *conn:
			x.closeOnce()
			c = x.Conn
			continue
		case *net.TCPConn:
			x.SetLinger(0)
			return x.Close()
		case interface{ NetConn() net.Conn }:
			c = x.NetConn()
			continue
		}
		return c.Close()
	}
}

// conn is a connection with the toxics of a Fault.
type conn struct {
	net.Conn
	f       Fault
	written atomic.Int64
	done    chan struct{}
	once    sync.Once
}

func newConn(c net.Conn, f Fault) *conn {
	return &conn{Conn: c, f: f, done: make(chan struct{})}
}

func (c *conn) closeOnce() { c.once.Do(func() { close(c.done) }) }

// NetConn returns the wrapped connection.
func (c *conn) NetConn() net.Conn { return c.Conn }

func (c *conn) sleep(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.done:
		return false
	}
}

func (c *conn) Read(p []byte) (int, error) {
	if !c.sleep(c.f.ReadLatency) {
		return 0, net.ErrClosed
	}
	return c.Conn.Read(p)
}

// errStalled is returned by a write that a stall held until the
// connection closed.
var errStalled = errors.New("faultkit: write stalled until the connection closed")

func (c *conn) Write(p []byte) (int, error) {
	var n int
	for len(p) > 0 {
		piece := p
		if c.f.WriteChunk > 0 && len(piece) > c.f.WriteChunk {
			piece = piece[:c.f.WriteChunk]
		}
		if lim := c.f.ResetAfterWrite; lim > 0 {
			left := lim - c.written.Load()
			if left <= 0 {
				Reset(c)
				return n, net.ErrClosed
			}
			if int64(len(piece)) > left {
				piece = piece[:left]
			}
		}
		if lim := c.f.StallAfterWrite; lim > 0 {
			left := lim - c.written.Load()
			if left <= 0 {
				<-c.done
				return n, errStalled
			}
			if int64(len(piece)) > left {
				piece = piece[:left]
			}
		}
		if !c.sleep(c.f.WriteLatency) {
			return n, net.ErrClosed
		}
		m, err := c.Conn.Write(piece)
		n += m
		c.written.Add(int64(m))
		p = p[m:]
		if err != nil {
			return n, err
		}
		if lim := c.f.ResetAfterWrite; lim > 0 && c.written.Load() >= lim {
			Reset(c)
			if len(p) == 0 {
				return n, nil
			}
			return n, net.ErrClosed
		}
	}
	return n, nil
}

func (c *conn) Close() error {
	c.closeOnce()
	return c.Conn.Close()
}

// CloseWrite half-closes the connection when the wrapped one can.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
