package lb

import (
	"net/http"
	"strings"

	"github.com/tinylb/lb/internal/pinned"
)

// stickyState is a request's sticky cookie on its way through the retry
// loop. The zero value is a request without one.
type stickyState struct {
	val  string // the value of the client's sticky cookie
	sent bool   // the client sent a sticky cookie (perhaps an empty one)
	done bool   // the cookie had its chance, on the first attempt
}

// readSticky takes the balancer's cookie out of the request to forward
// (HAProxy's "indirect": it is the balancer's, not the backend's) and
// keeps its value. Of several cookies of the name (a browser sends one per
// matching path), the first that names a backend of the pool wins.
func (l *retryLoop) readSticky() {
	h := l.req.Header
	vals := h["Cookie"]
	if len(vals) == 0 {
		return
	}
	name := l.b.o.sticky.Name
	ss := l.b.snap.Load().sticky
	var first string
outer:
	for _, line := range vals {
		for rest := line; rest != ""; {
			v, r, ok := nextCookie(rest, name)
			rest = r
			if !ok {
				continue
			}
			if !l.sticky.sent {
				first, l.sticky.sent = v, true
			}
			if _, known := ss.lookup(v); known {
				l.sticky.val = v
				break outer
			}
		}
	}
	if !l.sticky.sent {
		return
	}
	if l.sticky.val == "" {
		l.sticky.val = first
	}
	stripCookie(h, name)
}

// lookup returns the position of the backend a cookie value names.
func (ss *stickySnap) lookup(v string) (int, bool) {
	if ss == nil || v == "" {
		return -1, false
	}
	i, ok := ss.byID[v]
	return i, ok
}

// nextCookie scans the cookie-string s (RFC 6265 §5.4) for the next pair
// and returns its value and what follows it; ok says whether the pair is
// named name. It allocates nothing.
func nextCookie(s, name string) (value, rest string, ok bool) {
	pair, rest, _ := strings.Cut(s, ";")
	pair = strings.Trim(pair, " \t")
	n, v, eq := strings.Cut(pair, "=")
	if !eq || strings.Trim(n, " \t") != name {
		return "", rest, false
	}
	v = strings.Trim(v, " \t")
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	return v, rest, true
}

// stripCookie removes every cookie named name from the Cookie header
// lines of h, dropping lines left empty, and keeps the others in order.
// h is the header of the request to forward, a clone the balancer owns,
// so its slice is reused. A line loses its cookie without allocating
// when what is kept is one run of it (the cookie came first or last).
func stripCookie(h http.Header, name string) {
	vals := h["Cookie"]
	kept := vals[:0]
	for _, line := range vals {
		if line = stripLine(line, name); line != "" {
			kept = append(kept, line)
		}
	}
	clear(vals[len(kept):])
	if len(kept) == 0 {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = kept
}

// stripLine returns the cookie-string line without the cookies named
// name: a substring of line when the cookies kept are adjacent in it,
// else a new string of them joined by "; ".
func stripLine(line, name string) string {
	start, end := -1, -1 // the run of kept pairs, trimmed
	gap, split := false, false
	for off := 0; off < len(line); {
		pair, _, _ := strings.Cut(line[off:], ";")
		ps, pe := off, off+len(pair)
		off = pe + 1
		for ps < pe && (line[ps] == ' ' || line[ps] == '\t') {
			ps++
		}
		for pe > ps && (line[pe-1] == ' ' || line[pe-1] == '\t') {
			pe--
		}
		if ps == pe {
			continue
		}
		if isCookie(line[ps:pe], name) {
			gap = start >= 0
			continue
		}
		if start < 0 {
			start = ps
		} else if gap {
			split = true
		}
		end = pe
	}
	if start < 0 {
		return ""
	}
	if !split {
		return line[start:end]
	}
	var b strings.Builder
	b.Grow(end - start)
	for rest := line[start:end]; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, ";")
		pair = strings.Trim(pair, " \t")
		if pair == "" {
			continue
		}
		if isCookie(pair, name) {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString(pair)
	}
	return b.String()
}

// isCookie reports whether the cookie-pair pair is named name. A pair
// without "=" is a cookie without a name (RFC 6265bis §5.6 step 3), never
// the balancer's.
func isCookie(pair, name string) bool {
	n, _, eq := strings.Cut(pair, "=")
	return eq && strings.Trim(n, " \t") == name
}

// stickyPick returns the backend the client's cookie names, if it may take
// the request now, and whether the request is its probe; -1 if the
// strategy must choose. It is asked once per request, on the first
// attempt: a retry goes where the strategy sends it.
func (l *retryLoop) stickyPick(s *snapshot) (int, bool) {
	l.sticky.done = true
	i, ok := s.sticky.lookup(l.sticky.val)
	if !ok || !s.sticky.usable[i] {
		return -1, false
	}
	be := s.backends[i]
	gated := s.gated != nil && s.gated[i]
	if gated && !be.probeTaken.CompareAndSwap(false, true) {
		return -1, false // its one probe is out: as pick does, go elsewhere
	}
	l.note(be)
	return i, gated
}

// choose picks the backend of an attempt: the sticky cookie's, if it can
// take the request, else the strategy's. observed says whether the
// picker takes a Done for the attempt: always for its own picks, and for
// a sticky one only if it could be told of it (see package pinned).
func (l *retryLoop) choose(s *snapshot) (i int, gated, sticky, observed bool) {
	if l.sticky.sent && !l.sticky.done {
		if i, gated = l.stickyPick(s); i >= 0 {
			return i, gated, true, s.observer != nil && pinned.Pin(s.picker, i)
		}
		l.b.stats.stickyMisses.Add(1)
	}
	i, gated = l.pick(s)
	return i, gated, false, true
}

// stickyAnswer gives the client's answer a cookie naming the backend that
// sent it, unless the client's cookie names it already.
func (l *retryLoop) stickyAnswer(resp *http.Response) {
	var a *attempt
	switch body := resp.Body.(type) {
	case *trackedBody:
		a = &body.a
	case *trackedConn:
		a = &body.a
	default:
		return
	}
	ss := a.s.sticky
	if ss == nil || a.i >= len(ss.ids) || ss.ids[a.i] == l.sticky.val {
		return
	}
	if l.sticky.sent {
		l.b.stats.stickyRewrites.Add(1)
	}
	h := resp.Header
	if h == nil {
		h = make(http.Header)
		resp.Header = h
	}
	// HAProxy's "nocache": a shared cache may keep the answer, but not
	// this client's cookie with it (RFC 9111 §5.2.2.4). The backend's
	// own values stay; without any, both headers share one allocation,
	// each with a capacity of 1 so that appending to one never writes
	// into the other.
	const noCache = `no-cache="Set-Cookie"`
	sc, cc := h["Set-Cookie"], h["Cache-Control"]
	if sc == nil && cc == nil {
		v := []string{ss.setCookie[a.i], noCache}
		h["Set-Cookie"], h["Cache-Control"] = v[0:1:1], v[1:2:2]
		return
	}
	h["Set-Cookie"] = append(sc, ss.setCookie[a.i])
	h["Cache-Control"] = append(cc, noCache)
}
