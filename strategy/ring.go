package strategy

import (
	"cmp"
	"encoding/binary"
	"hash/crc32"
	"math/bits"
	"net/url"
	"slices"
	"strings"
)

// pointsPerWeight is the number of ring points per unit of configured weight:
// nginx's 160 (ngx_http_upstream_update_chash in
// ngx_http_upstream_hash_module.c), after Cache::Memcached::Fast and
// libketama.
const pointsPerWeight = 160

// ring is a ketama ring, built exactly as nginx's hash ... consistent
// (ngx_http_upstream_update_chash). It is immutable once built.
type ring struct {
	hashes []uint32 // point hashes, ascending, no two equal unless same server
	owner  []int32  // owner[j] is the position in All of the member at point j
	next   []int32  // next[j] is the first point after j (cyclically) with another owner
	runs   int      // number of runs of points with one owner; bounds a walk

	// index[t] is the first point whose hash has t as its top 32-shift
	// bits, or a later one; index[len(index)-1] is len(hashes). It narrows
	// the binary search to a point or two.
	index []int32
	shift uint
}

// serverString is the name a member's ring points derive from: the host
// and port of its Key, a URL (u.Host, so "10.0.0.1:8080", or
// "backend.example.com" when the Key has no port: the balancer's Keys drop
// a default port, so "http://x:80" and "http://x" hash alike as "x", as
// nginx's "server x" does). If the URL has a path
// other than "" or "/" it is appended, so that two members on one host and
// port with different base paths get different points; the scheme, user
// info, query and fragment are ignored. A Key that does not parse as a URL
// with a host (such as "unix:/tmp/x" or a bare "10.0.0.1:80") is used as is.
func serverString(key string) string {
	u, err := url.Parse(key)
	if err != nil || u.Host == "" {
		return key
	}
	s := u.Host
	if p := u.EscapedPath(); p != "" && p != "/" {
		s += p
	}
	return s
}

// splitServer splits a server string as nginx does: a "unix:" prefix
// (in any case) leaves the rest as host and no port; otherwise the digits
// at the end, if a ':' precedes them, are the port.
func splitServer(s string) (host, port string) {
	if len(s) >= 5 && strings.EqualFold(s[:5], "unix:") {
		return s[5:], ""
	}
	for i := len(s) - 1; i >= 0; i-- {
		c := s[i]
		if c == ':' {
			return s[:i], s[i+1:]
		}
		if c < '0' || c > '9' {
			break
		}
	}
	return s, ""
}

// ketamaPoints appends n ring points for server to dst, as nginx derives
// them: base is the CRC-32 state over host ‖ 0x00 ‖ port, and point j is the
// final CRC-32 of base ‖ LE32(point j-1), with zero before point 0.
func ketamaPoints(dst []uint32, server string, n int) []uint32 {
	host, port := splitServer(server)
	base := crc32.Update(0, crc32.IEEETable, []byte(host))
	base = crc32.Update(base, crc32.IEEETable, []byte{0})
	base = crc32.Update(base, crc32.IEEETable, []byte(port))
	var prev [4]byte
	for range n {
		h := crc32.Update(base, crc32.IEEETable, prev[:])
		dst = append(dst, h)
		binary.LittleEndian.PutUint32(prev[:], h)
	}
	return dst
}

// newRing builds the ring over all: pointsPerWeight points per unit of each
// member's configured weight.
//
// Points are sorted by hash. When points of different server strings share
// a hash only one is kept, as in nginx; the one whose server string sorts
// first wins, so that the ring does not depend on configuration order. When
// several members share one server string they share every point; all their
// points are kept, in configuration order, so the later ones take over the
// keys of the first when it is down.
func newRing(all []Endpoint) *ring {
	names := make([]string, len(all))
	type point struct {
		h uint32
		m int32
	}
	total := 0
	for _, e := range all {
		total += pointsPerWeight * max(e.Weight(), 1)
	}
	pts := make([]point, 0, total)
	var buf []uint32
	for i, e := range all {
		names[i] = serverString(e.Key())
		buf = ketamaPoints(buf[:0], names[i], pointsPerWeight*max(e.Weight(), 1))
		for _, h := range buf {
			pts = append(pts, point{h, int32(i)})
		}
	}
	slices.SortFunc(pts, func(a, b point) int {
		if c := cmp.Compare(a.h, b.h); c != 0 {
			return c
		}
		if c := strings.Compare(names[a.m], names[b.m]); c != 0 {
			return c
		}
		return cmp.Compare(a.m, b.m)
	})
	r := &ring{hashes: make([]uint32, 0, len(pts)), owner: make([]int32, 0, len(pts))}
	for j, p := range pts {
		if j > 0 && p.h == pts[j-1].h && names[p.m] != names[r.owner[len(r.owner)-1]] {
			continue
		}
		r.hashes = append(r.hashes, p.h)
		r.owner = append(r.owner, p.m)
	}
	r.link()
	r.buildIndex()
	return r
}

// maxIndexBits bounds the index to 2^16 buckets (256 KiB).
const maxIndexBits = 16

// buildIndex fills in index and shift: about one bucket per point.
func (r *ring) buildIndex() {
	b := min(max(bits.Len(uint(len(r.hashes))), 1), maxIndexBits)
	r.shift = uint(32 - b)
	r.index = make([]int32, 1<<b+1)
	j := 0
	for t := range 1 << b {
		for j < len(r.hashes) && r.hashes[j]>>r.shift < uint32(t) {
			j++
		}
		r.index[t] = int32(j)
	}
	r.index[1<<b] = int32(len(r.hashes))
}

// link fills in next and runs.
func (r *ring) link() {
	n := len(r.owner)
	r.next = make([]int32, n)
	r.runs = 0
	nxt := int32(-1)
	for k := 2*n - 1; k >= 0; k-- {
		j, j1 := k%n, (k+1)%n
		if r.owner[j1] != r.owner[j] {
			nxt = int32(j1)
			if k < n {
				r.runs++
			}
		}
		if k < n {
			r.next[j] = nxt
		}
	}
	if r.runs == 0 { // a single owner: one run, walking it once is enough
		for j := range r.next {
			r.next[j] = int32((j + 1) % n)
		}
		r.runs = min(n, 1)
	}
}

// lookup returns the member owning the first point at or after h
// (wrapping), skipping points whose owner is not usable (ok[m] false) or is
// in tried. A run of points of one owner costs one step. It returns -1 if no
// point has an owner that qualifies.
func (r *ring) lookup(h uint32, ok []bool, all []Endpoint, tried *Tried) int {
	j := r.start(h)
	if j < 0 {
		return -1
	}
	check := tried.Len() > 0
	for range r.runs + 1 {
		m := r.owner[j]
		if ok[m] && (!check || !tried.Has(all[m])) {
			return int(m)
		}
		j = int(r.next[j])
	}
	return -1
}

// start returns the first point at or after h, wrapping round to point 0,
// or -1 if the ring has no point.
func (r *ring) start(h uint32) int {
	n := len(r.hashes)
	if n == 0 {
		return -1
	}
	t := h >> r.shift
	j, hi := int(r.index[t]), int(r.index[t+1])
	if hi-j > 8 {
		k, _ := slices.BinarySearch(r.hashes[j:hi], h)
		j += k
	} else {
		for j < hi && r.hashes[j] < h {
			j++
		}
	}
	if j == n {
		j = 0
	}
	return j
}
