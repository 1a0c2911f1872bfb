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
func stripCookie(h http.Header, name string) {
	vals := h["Cookie"]
	kept := vals[:0:0]
	for _, line := range vals {
		var b strings.Builder
		for rest := line; rest != ""; {
			var pair string
			pair, rest, _ = strings.Cut(rest, ";")
			pair = strings.Trim(pair, " \t")
			if pair == "" {
				continue
			}
			if n, _, _ := strings.Cut(pair, "="); strings.Trim(n, " \t") == name {
				continue
			}
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			b.WriteString(pair)
		}
		if b.Len() > 0 {
			kept = append(kept, b.String())
		}
	}
	if len(kept) == 0 {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = kept
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
	h["Set-Cookie"] = append(h["Set-Cookie"], ss.setCookie[a.i])
	// HAProxy's "nocache": a shared cache may keep the answer, but not
	// this client's cookie with it (RFC 9111 §5.2.2.4).
	h["Cache-Control"] = append(h["Cache-Control"], `no-cache="Set-Cookie"`)
}
