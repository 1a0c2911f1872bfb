package lb

import (
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
)

// stripHopByHop deletes the hop-by-hop headers (RFC 9110 §7.6.1, and the
// ones ReverseProxy removes) and those the Connection header names. Header
// maps from net/http have canonical keys, and Header.Del canonicalizes its
// argument, not the map's keys, so deleting the canonical names found in a
// pass over the map removes exactly what Header.Del would.
func stripHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for v != "" {
			var f string
			f, v, _ = strings.Cut(v, ",")
			if f = textproto.TrimString(f); f != "" {
				h.Del(f)
			}
		}
	}
	for k := range h {
		switch k {
		case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
			"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
			delete(h, k)
		}
	}
}

// hasToken reports whether one of the comma-separated lists in values has
// token, compared without case: httpguts.HeaderValuesContainsToken.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for v != "" {
			var f string
			f, v, _ = strings.Cut(v, ",")
			if asciiEqualFold(textproto.TrimString(f), token) {
				return true
			}
		}
	}
	return false
}

// isEventStream reports whether the media type of h's Content-Type is
// text/event-stream, as mime.ParseMediaType would find it: the part before
// any parameters, trimmed, without case. A value ParseMediaType rejects
// can only differ by not being text/event-stream.
func isEventStream(h http.Header) bool {
	v := h["Content-Type"]
	if len(v) == 0 {
		return false
	}
	base, _, _ := strings.Cut(v[0], ";")
	return asciiEqualFold(strings.TrimSpace(base), "text/event-stream")
}

// asciiEqualFold reports whether s and t are equal with ASCII letters
// compared without case (and no other folding, unlike strings.EqualFold).
func asciiEqualFold(s, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		a, b := s[i], t[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}

// maxQueryParams is net/url's default bound on query parameters.
const maxQueryParams = 10000

// cleanQuery is ReverseProxy's cleanQueryParams: a query that Go's own
// parsing would not read the same way (a ';' separator, a bad '%' escape,
// too many parameters) is re-encoded from what url.ParseQuery accepts, so
// that the backend and anything in front of it cannot disagree about it.
// Any other query passes unchanged.
func cleanQuery(s string) string {
	reencode := func(s string) string {
		v, _ := url.ParseQuery(s)
		return v.Encode()
	}
	if strings.Count(s, "&")+1 > maxQueryParams {
		return reencode(s)
	}
	for i := 0; i < len(s); {
		switch s[i] {
		case ';':
			return reencode(s)
		case '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return reencode(s)
			}
			i += 3
		default:
			i++
		}
	}
	return s
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
