package discovery

import (
	"encoding/binary"
	"net"
	"sync"
	"time"
)

// The standard library's resolver parses DNS responses but keeps their
// TTLs to itself. A DNSSource hands it connections that read the
// responses as they pass: each response to the query written on the
// connection (same ID) is parsed just enough (RFC 1035 §4.1) to learn its
// RCODE and the TTLs of its answer records. The resolver still does all
// the DNS work (retries, TCP after a truncated answer, /etc/hosts).

// ttls gathers the records of the lookups of one poll.
type ttls struct {
	mu   sync.Mutex
	recs []*ttlRecorder
}

func newTTLs() *ttls { return &ttls{} }

// lookup returns a recorder for one lookup of the poll.
func (t *ttls) lookup() *ttlRecorder {
	r := &ttlRecorder{}
	t.mu.Lock()
	t.recs = append(t.recs, r)
	t.mu.Unlock()
	return r
}

// min returns the smallest TTL over the answers of the poll, or -1 if no
// answer record was seen.
func (t *ttls) min() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	best := time.Duration(-1)
	for _, r := range t.recs {
		r.mu.Lock()
		if r.hasTTL && (best < 0 || time.Duration(r.ttl)*time.Second < best) {
			best = time.Duration(r.ttl) * time.Second
		}
		r.mu.Unlock()
	}
	return best
}

// ttlRecorder learns from the responses of one lookup (A and AAAA are two
// queries, on connections of their own, at once).
type ttlRecorder struct {
	mu       sync.Mutex
	ttl      uint32 // smallest TTL of an answer record
	hasTTL   bool
	nxdomain bool // some response was NXDOMAIN
	answered bool // some response was NOERROR
}

// outcome reports whether a response said NXDOMAIN, and whether one said
// NOERROR.
func (r *ttlRecorder) outcome() (nxdomain, answered bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nxdomain, r.answered
}

// observe records what the DNS message m says.
func (r *ttlRecorder) observe(m []byte) {
	rcode, ttl, hasTTL, ok := parseResponse(m)
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch rcode {
	case 0:
		r.answered = true
	case 3:
		r.nxdomain = true
	}
	if hasTTL && (!r.hasTTL || ttl < r.ttl) {
		r.ttl, r.hasTTL = ttl, true
	}
}

// wrap returns c reading for r: a packet connection stays one, as the
// resolver tells UDP from TCP by that.
func (r *ttlRecorder) wrap(c net.Conn) net.Conn {
	if u, ok := c.(*net.UDPConn); ok {
		return &udpSniffer{UDPConn: u, rec: r}
	}
	return &tcpSniffer{Conn: c, rec: r}
}

// udpSniffer is a UDP connection whose reads of responses to its query
// are recorded. Each read is one message.
type udpSniffer struct {
	*net.UDPConn
	rec *ttlRecorder
	id  [2]byte
	set bool
}

func (c *udpSniffer) Write(b []byte) (int, error) {
	if len(b) >= 2 {
		copy(c.id[:], b)
		c.set = true
	}
	return c.UDPConn.Write(b)
}

func (c *udpSniffer) Read(b []byte) (int, error) {
	n, err := c.UDPConn.Read(b)
	if n >= 12 && c.set && b[0] == c.id[0] && b[1] == c.id[1] {
		c.rec.observe(b[:n])
	}
	return n, err
}

// tcpSniffer is a TCP connection (RFC 1035 §4.2.2: each message after a
// two-byte length) whose responses to its query are recorded.
type tcpSniffer struct {
	net.Conn
	rec *ttlRecorder
	id  [2]byte
	set bool
	buf []byte // bytes read of messages not yet whole
}

func (c *tcpSniffer) Write(b []byte) (int, error) {
	if len(b) >= 4 && !c.set {
		copy(c.id[:], b[2:])
		c.set = true
	}
	return c.Conn.Write(b)
}

func (c *tcpSniffer) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.buf = append(c.buf, b[:n]...)
	for len(c.buf) >= 2 {
		l := int(binary.BigEndian.Uint16(c.buf))
		if len(c.buf) < 2+l {
			break
		}
		m := c.buf[2 : 2+l]
		if l >= 12 && c.set && m[0] == c.id[0] && m[1] == c.id[1] {
			c.rec.observe(m)
		}
		c.buf = c.buf[2+l:]
	}
	return n, err
}

// parseResponse returns the RCODE of the DNS response m and the smallest
// TTL of its answer records, if it has any; ok is false if m is no
// well-formed response.
func parseResponse(m []byte) (rcode int, ttl uint32, hasTTL, ok bool) {
	if len(m) < 12 || m[2]&0x80 == 0 {
		return 0, 0, false, false
	}
	rcode = int(m[3] & 0x0F)
	qd := int(binary.BigEndian.Uint16(m[4:]))
	an := int(binary.BigEndian.Uint16(m[6:]))
	off := 12
	for range qd {
		if off = skipName(m, off); off < 0 || off+4 > len(m) {
			return 0, 0, false, false
		}
		off += 4
	}
	for range an {
		if off = skipName(m, off); off < 0 || off+10 > len(m) {
			return 0, 0, false, false
		}
		t := binary.BigEndian.Uint32(m[off+4:])
		rdlen := int(binary.BigEndian.Uint16(m[off+8:]))
		off += 10 + rdlen
		if off > len(m) {
			return 0, 0, false, false
		}
		// RFC 2181 §8: a TTL with the top bit set counts as 0.
		if t > 1<<31-1 {
			t = 0
		}
		if !hasTTL || t < ttl {
			ttl, hasTTL = t, true
		}
	}
	return rcode, ttl, hasTTL, true
}

// skipName returns the offset past the (possibly compressed) name at off
// of m, or -1.
func skipName(m []byte, off int) int {
	for off < len(m) {
		l := int(m[off])
		switch {
		case l == 0:
			return off + 1
		case l&0xC0 == 0xC0: // a pointer ends the name (RFC 1035 §4.1.4)
			if off+2 > len(m) {
				return -1
			}
			return off + 2
		case l&0xC0 != 0:
			return -1
		}
		off += 1 + l
	}
	return -1
}
