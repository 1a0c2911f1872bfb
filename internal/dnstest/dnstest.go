// Package dnstest is a DNS server for tests: it answers A, AAAA and SRV
// questions over UDP on 127.0.0.1 from records the test sets, changes them
// at any time, and fails on demand (SERVFAIL, NXDOMAIN, an empty answer),
// so that DNS discovery is tested against real DNS messages and the
// standard library's resolver.
//
// It speaks the subset of RFC 1035 a stub resolver needs: one question per
// query, answers with their TTLs, no compression but the pointer from each
// answer to the question's name, over UDP and TCP (RFC 1035 §4.2.2) on the
// same port. [Server.Truncate] makes the UDP answers of a name truncated
// (TC), so that the resolver asks again over TCP. Go's resolver sends an
// EDNS0 OPT record (RFC 6891) advertising 1232 bytes; the server ignores
// it and refuses to build a larger answer.
package dnstest

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

// Record types and response codes (RFC 1035 §3.2.2, §4.1.1; RFC 3596;
// RFC 2782).
const (
	TypeA    = 1
	TypeAAAA = 28
	TypeSRV  = 33

	RcodeSuccess  = 0
	RcodeServFail = 2
	RcodeNXDomain = 3
	rcodeFormErr  = 1
	rcodeNotImp   = 4

	classINET = 1
	maxAnswer = 1232
)

// SRV is one SRV record's data.
type SRV struct {
	Priority, Weight, Port uint16
	Target                 string
}

type key struct {
	name  string
	qtype uint16
}

// rrset is the records of one name and type, with their TTL.
type rrset struct {
	ttl  uint32
	data [][]byte // RDATA of each record
}

// Server is a running DNS server. Its methods may be called from any
// goroutine while it serves.
type Server struct {
	// Addr is the server's address, 127.0.0.1:port.
	Addr string

	conn *net.UDPConn
	ln   net.Listener // TCP, on the port of conn
	wg   sync.WaitGroup

	mu      sync.Mutex // guards what follows
	records map[key]rrset
	forced  map[string]int // name → rcode answered for every question of it
	trunc   map[string]bool
	queries map[key]int
	tcpConn map[net.Conn]bool // open TCP connections, closed by Close
	closed  bool
}

// Start starts a server on 127.0.0.1; the test's cleanup stops it.
func Start(t testing.TB) *Server {
	t.Helper()
	conn, ln, err := listen()
	if err != nil {
		t.Fatalf("dnstest: %v", err)
	}
	s := &Server{
		Addr:    conn.LocalAddr().String(),
		conn:    conn,
		ln:      ln,
		records: make(map[key]rrset),
		forced:  make(map[string]int),
		trunc:   make(map[string]bool),
		queries: make(map[key]int),
		tcpConn: make(map[net.Conn]bool),
	}
	s.wg.Go(s.serve)
	s.wg.Go(s.serveTCP)
	t.Cleanup(s.Close)
	return s
}

// listen opens a UDP socket and a TCP listener on one free port of
// 127.0.0.1.
func listen() (*net.UDPConn, net.Listener, error) {
	var err error
	for range 20 {
		var conn *net.UDPConn
		conn, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return nil, nil, err
		}
		var ln net.Listener
		if ln, err = net.Listen("tcp", conn.LocalAddr().String()); err == nil {
			return conn, ln, nil
		}
		conn.Close() // the port is taken for TCP: try another
	}
	return nil, nil, err
}

// Close stops the server and waits for it. It is idempotent.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.tcpConn {
		c.Close()
	}
	s.mu.Unlock()
	s.conn.Close()
	s.ln.Close()
	s.wg.Wait()
}

// Resolver returns a resolver that sends every query to s.
func (s *Server) Resolver() *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, s.Addr)
		},
	}
}

// canonical is name in lower case with a final dot.
func canonical(name string) string {
	name = strings.ToLower(name)
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	return name
}

// SetAddrs sets the A and AAAA records of name to ips (by family), with
// ttl. No ips removes them.
func (s *Server) SetAddrs(name string, ttl uint32, ips ...string) {
	var a, aaaa rrset
	a.ttl, aaaa.ttl = ttl, ttl
	for _, ip := range ips {
		addr := netip.MustParseAddr(ip)
		if addr.Is4() {
			b := addr.As4()
			a.data = append(a.data, b[:])
		} else {
			b := addr.As16()
			aaaa.data = append(aaaa.data, b[:])
		}
	}
	s.set(key{canonical(name), TypeA}, a)
	s.set(key{canonical(name), TypeAAAA}, aaaa)
}

// SetSRV sets the SRV records of name (such as _http._tcp.example.com)
// to recs, with ttl. No recs removes them.
func (s *Server) SetSRV(name string, ttl uint32, recs ...SRV) {
	set := rrset{ttl: ttl}
	for _, r := range recs {
		b := binary.BigEndian.AppendUint16(nil, r.Priority)
		b = binary.BigEndian.AppendUint16(b, r.Weight)
		b = binary.BigEndian.AppendUint16(b, r.Port)
		b = appendName(b, canonical(r.Target))
		set.data = append(set.data, b)
	}
	s.set(key{canonical(name), TypeSRV}, set)
}

func (s *Server) set(k key, set rrset) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(set.data) == 0 {
		delete(s.records, k)
		return
	}
	s.records[k] = set
}

// Fail makes every question of name get rcode (RcodeServFail,
// RcodeNXDomain, or RcodeSuccess with no answer), whatever its records.
// Heal undoes it.
func (s *Server) Fail(name string, rcode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forced[canonical(name)] = rcode
}

// Heal makes the server answer questions of name from its records again.
func (s *Server) Heal(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.forced, canonical(name))
}

// Truncate makes the UDP answers to questions of name truncated (the TC
// bit set, no record), on or off: the resolver asks again over TCP.
func (s *Server) Truncate(name string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trunc[canonical(name)] = on
}

// Queries returns how many questions of name and qtype the server got.
func (s *Server) Queries(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[key{canonical(name), qtype}]
}

func (s *Server) serve() {
	buf := make([]byte, 4096)
	for {
		n, from, err := s.conn.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if resp := s.answer(buf[:n], true); resp != nil {
			s.conn.WriteToUDP(resp, from)
		}
	}
}

func (s *Server) serveTCP() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.tcpConn[c] = true
		s.mu.Unlock()
		s.wg.Go(func() {
			defer func() {
				s.mu.Lock()
				delete(s.tcpConn, c)
				s.mu.Unlock()
				c.Close()
			}()
			s.serveConn(c)
		})
	}
}

// serveConn answers the queries of one TCP connection, each message after
// its two-byte length.
func (s *Server) serveConn(c net.Conn) {
	for {
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return
		}
		q := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, q); err != nil {
			return
		}
		resp := s.answer(q, false)
		if resp == nil {
			return
		}
		if _, err := c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(resp))), resp...)); err != nil {
			return
		}
	}
}

// answer returns the response to the query q, or nil to drop it; udp says
// the query came over UDP.
func (s *Server) answer(q []byte, udp bool) []byte {
	if len(q) < 12 || q[2]&0x80 != 0 { // too short, or a response
		return nil
	}
	resp := func(rcode int, question []byte, answers int) []byte {
		h := make([]byte, 12, 512)
		copy(h, q[:2])                 // ID
		h[2] = 0x80 | q[2]&0x79 | 0x04 // QR, the query's opcode and RD, AA
		h[3] = 0x80 | byte(rcode)      // RA, RCODE
		if question != nil {
			binary.BigEndian.PutUint16(h[4:], 1)
		}
		binary.BigEndian.PutUint16(h[6:], uint16(answers))
		return append(h, question...)
	}
	if q[2]&0x78 != 0 { // an opcode other than QUERY
		return resp(rcodeNotImp, nil, 0)
	}
	if binary.BigEndian.Uint16(q[4:]) != 1 {
		return resp(rcodeFormErr, nil, 0)
	}
	name, end, ok := readName(q, 12)
	if !ok || end+4 > len(q) {
		return resp(rcodeFormErr, nil, 0)
	}
	question := q[12 : end+4]
	qtype := binary.BigEndian.Uint16(q[end:])
	qclass := binary.BigEndian.Uint16(q[end+2:])
	k := key{strings.ToLower(name), qtype}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.queries[k]++
	if rcode, forced := s.forced[k.name]; forced {
		return resp(rcode, question, 0)
	}
	set, found := s.records[k]
	if !found || qclass != classINET {
		if s.exists(k.name) {
			return resp(RcodeSuccess, question, 0) // NODATA
		}
		return resp(RcodeNXDomain, question, 0)
	}
	if udp && s.trunc[k.name] {
		m := resp(RcodeSuccess, question, 0)
		m[2] |= 0x02 // TC
		return m
	}
	m := resp(RcodeSuccess, question, len(set.data))
	for _, rd := range set.data {
		m = append(m, 0xC0, 12) // the name: a pointer to the question's
		m = binary.BigEndian.AppendUint16(m, qtype)
		m = binary.BigEndian.AppendUint16(m, classINET)
		m = binary.BigEndian.AppendUint32(m, set.ttl)
		m = binary.BigEndian.AppendUint16(m, uint16(len(rd)))
		m = append(m, rd...)
	}
	if len(m) > maxAnswer {
		panic("dnstest: answer longer than 1232 bytes: set fewer records")
	}
	return m
}

// exists reports whether name has records of any type. s.mu must be held.
func (s *Server) exists(name string) bool {
	for k := range s.records {
		if k.name == name {
			return true
		}
	}
	return false
}

// readName reads the uncompressed name at off of m, as a dotted string
// with a final dot, and returns the offset past it.
func readName(m []byte, off int) (string, int, bool) {
	var b strings.Builder
	for {
		if off >= len(m) {
			return "", 0, false
		}
		l := int(m[off])
		off++
		switch {
		case l == 0:
			if b.Len() == 0 {
				return ".", off, true
			}
			return b.String(), off, true
		case l > 63 || off+l > len(m):
			return "", 0, false // a pointer, or too long: not in a query
		}
		b.Write(m[off : off+l])
		b.WriteByte('.')
		off += l
	}
}

// appendName appends name (with its final dot) in wire form.
func appendName(b []byte, name string) []byte {
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		if label == "" {
			continue
		}
		b = append(b, byte(len(label)))
		b = append(b, label...)
	}
	return append(b, 0)
}
