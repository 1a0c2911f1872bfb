package faultkit

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// RawExchange connects to addr, writes payload, and reads what comes back
// until the peer closes the connection or nothing arrives for quiet. It
// returns what it read; hitting quiet is not an error.
func RawExchange(addr string, payload []byte, quiet time.Duration) ([]byte, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if _, err := c.Write(payload); err != nil {
		return nil, err
	}
	return ReadUntilQuiet(c, quiet)
}

// ReadUntilQuiet reads from c until it closes, fails, or nothing arrives
// for quiet.
func ReadUntilQuiet(c net.Conn, quiet time.Duration) ([]byte, error) {
	var out []byte
	buf := make([]byte, 32<<10)
	for {
		c.SetReadDeadline(time.Now().Add(quiet))
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			var ne net.Error
			if errors.Is(err, io.EOF) || errors.As(err, &ne) && ne.Timeout() || errors.Is(err, net.ErrClosed) {
				return out, nil
			}
			return out, err
		}
	}
}

// RawServer is a TCP server on loopback whose connections are handled by a
// function of the test: for backends that answer with bytes no HTTP server
// would write.
type RawServer struct {
	ln     net.Listener
	handle func(c net.Conn, br *bufio.Reader)

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// NewRawServer starts a raw server. handle owns the connection until it
// returns; the server closes it then.
func NewRawServer(handle func(c net.Conn, br *bufio.Reader)) (*RawServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &RawServer{ln: ln, handle: handle, conns: make(map[net.Conn]struct{})}
	s.wg.Go(s.accept)
	return s, nil
}

func (s *RawServer) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Go(func() {
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			s.handle(c, bufio.NewReader(c))
		})
	}
}

// Addr is the server's host:port.
func (s *RawServer) Addr() string { return s.ln.Addr().String() }

// URL is "http://" + Addr.
func (s *RawServer) URL() string { return "http://" + s.Addr() }

// Close stops the server, closes its connections and waits for handlers.
func (s *RawServer) Close() {
	s.ln.Close()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// ReadRequest reads one request from br, with its body, for raw servers.
func ReadRequest(br *bufio.Reader) (*http.Request, []byte, error) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, nil, err
	}
	body, err := io.ReadAll(req.Body)
	return req, body, err
}

// FDCount returns the number of open file descriptors of the process, or
// -1 where /proc/self/fd does not exist.
func FDCount() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents) - 1 // the directory being read
}
