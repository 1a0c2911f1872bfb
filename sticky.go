package lb

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// defaultStickyName is the cookie's name when StickyCookie.Name is empty.
const defaultStickyName = "tinylb"

// minStickySecret is the shortest secret accepted: 128 bits, the
// security level of the 128-bit truncated MAC the cookie carries.
const minStickySecret = 16

// stickyIDBytes is how much of the HMAC-SHA256 the cookie keeps: 128 bits
// (NIST SP 800-107 §5.3.4 allows truncation to any length of at least 32
// bits; 128 leaves forging a cookie as hard as guessing the secret).
const stickyIDBytes = 16

// stickyIDLen is the length of a cookie value: stickyIDBytes in unpadded
// base64url, 22 characters, all of them cookie-octets (RFC 6265 §4.1.1).
var stickyIDLen = base64.RawURLEncoding.EncodedLen(stickyIDBytes)

// StickyCookie configures session affinity by a cookie the balancer sets
// itself, as HAProxy's "cookie SRV insert indirect nocache", nginx Plus's
// "sticky cookie" and Traefik's sticky cookies do. See [WithStickyCookie].
//
// The fields other than Secret mean what the fields of the same names of
// [http.Cookie] mean, and are sent as its String method sends them.
type StickyCookie struct {
	// Name is the cookie's name; default "tinylb". A
	// name with the prefix "__Host-" or "__Secure-" (RFC 6265bis §4.1.3)
	// needs Secure, and "__Host-" also Path "/" and no Domain.
	Name string
	// Secret keys the HMAC-SHA256 that names each backend in the cookie;
	// at least 16 bytes, and 32 random ones are best. Balancers given the
	// same secret name a backend alike, so that any of them honours a
	// cookie another one set; a cookie made with another secret, or
	// changed in any byte, names no backend and is ignored. Changing the
	// secret moves every session once. It is copied by WithStickyCookie.
	Secret []byte
	// Path is the cookie's Path attribute; default "/".
	Path string
	// Domain is the cookie's Domain attribute; empty (the default) sends
	// none, so the cookie goes back only to the host that set it.
	Domain string
	// MaxAge is how long the browser keeps the cookie, in whole seconds
	// (Max-Age); zero (the default) makes it a session cookie, kept until
	// the browser closes. It must not be negative or under a second. It
	// counts from when the cookie was set: an answer to a request whose
	// cookie is right does not set it again (as with nginx's "sticky
	// cookie ... expires=", not HAProxy's "maxidle").
	MaxAge time.Duration
	// Secure sends the cookie over HTTPS only.
	Secure bool
	// HttpOnly hides the cookie from scripts. Off by default, as in
	// http.Cookie and HAProxy (its "httponly" keyword); nothing in a page
	// needs to read the cookie, so turning it on costs nothing.
	HttpOnly bool
	// SameSite is the SameSite attribute; the zero value sends none.
	// http.SameSiteNoneMode needs Secure, or browsers drop the cookie.
	SameSite http.SameSite
}

// WithStickyCookie turns on session affinity: the balancer answers each
// client's first request with a cookie naming the backend that served it,
// and sends the client's later requests that carry the cookie to that
// backend without asking the strategy, as long as the backend is usable
// (in the set the strategy chooses from: not down, ejected, draining, in
// maintenance, removed, nor a backup while primaries serve; a backend
// probing after an ejection takes the sticky request if its one probe is
// free). Otherwise the strategy chooses, and the answer carries a cookie
// naming the new backend. A retry on another backend, too, rewrites the
// cookie to the backend that answered. An answer to a request whose
// cookie is right has no Set-Cookie.
//
// The cookie never holds a backend's address: its value is an HMAC-SHA256
// of the backend's [Backend.Key] (its URL in normal form, so that every
// spelling of one server gives one cookie) keyed with c.Secret, truncated
// to 128 bits. A cookie that names no backend of the pool (tampered with, made
// with another secret, or naming a removed backend) is ignored, and
// re-issued. Like HAProxy's "indirect", the balancer removes its cookie
// from the request it forwards: the backend, and the strategy's key
// function, never see it. Like HAProxy's "nocache", an answer that sets
// the cookie also gets Cache-Control: no-cache="Set-Cookie" (RFC 9111
// §5.2.2.4), so that a shared cache may keep the answer but never hands
// one client's cookie to another. The backend's own Set-Cookie headers
// pass unchanged.
//
// Sticky requests reach least connections' counts and the smooth
// weighted failure feedback like picks; a strategy of the user's does
// not see them (no Pick, no Done). [Stats] counts them per backend
// (StickyHits), and the cookies not honoured (StickyMisses) and rewritten
// (StickyRewrites). An invalid c makes New panic; check it first with
// [StickyCookie.Validate] when it comes from configuration.
func WithStickyCookie(c StickyCookie) Option {
	c.Secret = append([]byte(nil), c.Secret...)
	return optionFunc(func(o *options) { o.sticky = &c })
}

// withDefaults fills in the defaults of the fields left empty.
func (c StickyCookie) withDefaults() StickyCookie {
	if c.Name == "" {
		c.Name = defaultStickyName
	}
	if c.Path == "" {
		c.Path = "/"
	}
	return c
}

// Validate reports what is wrong with c, with an error that wraps
// [ErrInvalidStickyCookie].
func (c StickyCookie) Validate() error {
	if len(c.Secret) < minStickySecret {
		return fmt.Errorf("%w: Secret is %d bytes, want at least %d", ErrInvalidStickyCookie, len(c.Secret), minStickySecret)
	}
	if c.MaxAge < 0 || c.MaxAge > 0 && c.MaxAge < time.Second {
		return fmt.Errorf("%w: MaxAge %v: want 0 (a session cookie) or at least 1s", ErrInvalidStickyCookie, c.MaxAge)
	}
	c = c.withDefaults()
	if !strings.HasPrefix(c.Path, "/") {
		return fmt.Errorf("%w: Path %q: must start with /", ErrInvalidStickyCookie, c.Path)
	}
	if c.SameSite == http.SameSiteNoneMode && !c.Secure {
		return fmt.Errorf("%w: SameSite=None needs Secure (browsers drop the cookie otherwise)", ErrInvalidStickyCookie)
	}
	lower := strings.ToLower(c.Name)
	if strings.HasPrefix(lower, "__secure-") && !c.Secure {
		return fmt.Errorf("%w: Name %q: the __Secure- prefix needs Secure", ErrInvalidStickyCookie, c.Name)
	}
	if strings.HasPrefix(lower, "__host-") && (!c.Secure || c.Path != "/" || c.Domain != "") {
		return fmt.Errorf("%w: Name %q: the __Host- prefix needs Secure, Path \"/\" and no Domain", ErrInvalidStickyCookie, c.Name)
	}
	probe := c.cookie(strings.Repeat("A", stickyIDLen))
	if err := probe.Valid(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidStickyCookie, err)
	}
	return nil
}

// cookie is the cookie naming value, with c's attributes.
func (c StickyCookie) cookie(value string) *http.Cookie {
	return &http.Cookie{
		Name: c.Name, Value: value, Path: c.Path, Domain: c.Domain,
		MaxAge: int(c.MaxAge / time.Second), Secure: c.Secure, HttpOnly: c.HttpOnly, SameSite: c.SameSite,
	}
}

// stickyID is the cookie value naming the backend with the given key:
// HMAC-SHA256(secret, domain-separated key), truncated, in base64url. It
// depends on the key and the secret only, so that balancers with one
// secret agree, and reveals nothing of the key.
func stickyID(secret []byte, key string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("tinylb sticky v1\x00"))
	m.Write([]byte(key))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:stickyIDBytes])
}

// stickyEntry is what the balancer keeps of a backend for its cookie.
type stickyEntry struct {
	id        string // the cookie value naming the backend
	setCookie string // the whole Set-Cookie header value
}

// stickyEntryLocked returns be's entry, made once. pool.mu must be held.
func (b *Balancer) stickyEntryLocked(be *Backend) stickyEntry {
	if e, ok := b.stickyEntries[be]; ok {
		return e
	}
	c := b.o.sticky
	id := stickyID(c.Secret, be.key)
	e := stickyEntry{id: id, setCookie: c.cookie(id).String()}
	b.stickyEntries[be] = e
	return e
}

// stickySnap is the part of a snapshot that sticky requests read.
type stickySnap struct {
	byID      map[string]int // cookie value → position in snapshot.backends
	usable    []bool         // usable[i]: backends[i] is in the strategy's usable set
	ids       []string       // the cookie value naming backends[i]
	setCookie []string       // the Set-Cookie header value naming backends[i]
}

// stickySnapLocked builds the sticky part of a snapshot over members, of
// which the positions in usable may take requests. pool.mu must be held.
func (b *Balancer) stickySnapLocked(members []*Backend, usable []int) *stickySnap {
	ss := &stickySnap{
		byID:      make(map[string]int, len(members)),
		usable:    make([]bool, len(members)),
		ids:       make([]string, len(members)),
		setCookie: make([]string, len(members)),
	}
	for i, be := range members {
		e := b.stickyEntryLocked(be)
		ss.byID[e.id] = i
		ss.ids[i] = e.id
		ss.setCookie[i] = e.setCookie
	}
	for _, i := range usable {
		ss.usable[i] = true
	}
	return ss
}
