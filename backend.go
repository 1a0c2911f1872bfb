package lb

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// MaxWeight is the largest weight a backend may have. A bound keeps the
// smooth weighted sums and the consistent-hash ring (160 points per weight
// unit) small; HAProxy's bound is 256.
const MaxWeight = 1000

// Backend is one upstream server: a URL, a weight and its health. Create it
// with [NewBackend] and put it in one [Pool]. A Backend must not be copied.
//
// Its health flags are guarded by the owning pool's lock; its request
// counters are atomics, so reading them never slows the request path.
type Backend struct {
	url    *url.URL // never modified after NewBackend
	key    string   // normalized, credential-free URL: the identity in a pool
	weight atomic.Int64
	backup atomic.Bool

	pool atomic.Pointer[Pool] // the pool it belongs to, nil when in none

	// Guarded by pool.mu.
	alive        bool          // verdict of the active checker; true without one
	ejectedUntil time.Time     // passive ejection end; zero when not ejected
	ejectFor     time.Duration // length of the last ejection, repeated if the probe fails
	probing      bool          // ejection over: one probe request decides
	upSince      time.Time     // start of the slow-start ramp; zero when none
	reason       string        // why the backend is in its current state
	lastCheck    time.Time     // time of the last active check
	lastCheckErr error         // error of the last active check, nil if it passed
	draining     bool          // takes no new requests; in-flight ones finish
	maintenance  bool          // taken out by hand; health checks do not bring it back

	// noNew is set while the backend must take no new request (draining,
	// in maintenance, removed). An attempt that picked it from an older
	// snapshot sees it after counting itself in flight and backs off, so
	// that Drain and Remove never race with a request just starting.
	noNew  atomic.Bool
	idleMu sync.Mutex    // guards idle
	idle   chan struct{} // closed when active drops to 0 while draining

	probeTaken atomic.Bool  // a probe request is in flight (while probing)
	active     atomic.Int64 // attempts in flight, streams and upgrades included
	stats      backendStats
}

// backendStats are the per-backend totals, updated with atomics.
type backendStats struct {
	requests atomic.Int64 // attempts started
	failures atomic.Int64 // attempts that counted as failures
	retries  atomic.Int64 // attempts that were retries of an earlier one
	sticky   atomic.Int64 // requests a sticky cookie sent here
	latency  latencyStats // time to response headers
}

// BackendOption configures a Backend in [NewBackend].
type BackendOption interface {
	applyBackend(*Backend) error
}

type backendOptionFunc func(*Backend) error

func (f backendOptionFunc) applyBackend(b *Backend) error { return f(b) }

// WithWeight sets the backend's weight: its share of requests relative to
// the other backends under the weighted strategies, and its number of ring
// points (160 per unit) under [ConsistentHash]. The default is 1. Weights
// are integers from 1 to [MaxWeight]; anything else makes NewBackend fail.
// To take a backend out of rotation, remove or drain it; weight 0 is not a
// way to do that.
func WithWeight(w int) BackendOption {
	return backendOptionFunc(func(b *Backend) error {
		if w < 1 || w > MaxWeight {
			return fmt.Errorf("%w: weight %d for %s: must be between 1 and %d", ErrInvalidBackend, w, b.key, MaxWeight)
		}
		b.weight.Store(int64(w))
		return nil
	})
}

// AsBackup makes the backend a backup: it takes requests only while no
// primary (non-backup) backend is available, as nginx's and HAProxy's
// backup servers do.
func AsBackup() BackendOption {
	return backendOptionFunc(func(b *Backend) error {
		b.backup.Store(true)
		return nil
	})
}

// NewBackend returns a backend for rawURL, an absolute http or https URL
// such as "http://10.0.0.1:8080" or "https://api.internal/base". A path in
// the URL is joined in front of every request's path. Credentials in the
// URL are rejected: they would be forwarded to nobody and logged everywhere.
// The error wraps [ErrInvalidBackend], quotes the value and names what is
// wrong; a value without a scheme ("10.0.0.1:8080", "localhost:8080") or
// with another one ("ftp://x") is told "want an http:// or https:// URL".
func NewBackend(rawURL string, opts ...BackendOption) (*Backend, error) {
	u, key, err := parseBackendURL(rawURL)
	if err != nil {
		return nil, err
	}
	b := &Backend{url: u, key: key, alive: true}
	b.weight.Store(1)
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.applyBackend(b); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// parseBackendURL validates rawURL and returns it with its normalized key.
func parseBackendURL(rawURL string) (*url.URL, string, error) {
	bad := func(why string) error {
		return fmt.Errorf("%w: URL %q: %s", ErrInvalidBackend, redactRaw(rawURL), why)
	}
	if strings.TrimSpace(rawURL) == "" {
		return nil, "", bad("empty")
	}
	if why := schemeProblem(rawURL); why != "" {
		return nil, "", bad(why)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		// The url package quotes the input in its message; keep only our
		// redacted copy and the reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			return nil, "", bad(ue.Err.Error())
		}
		return nil, "", bad(err.Error())
	}
	switch {
	case u.Opaque != "":
		return nil, "", bad("not a hierarchical URL")
	case u.User != nil:
		return nil, "", bad("credentials are not allowed in a backend URL")
	case u.Host == "":
		return nil, "", bad("missing host")
	case u.Fragment != "" || strings.Contains(rawURL, "#"):
		return nil, "", bad("fragments are not allowed")
	}
	host := u.Hostname()
	if host == "" {
		return nil, "", bad("missing host")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, "", bad("port must be between 1 and 65535")
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return nil, "", bad("empty port")
	}
	if strings.ContainsAny(host, " \t\r\n") {
		return nil, "", bad("invalid host")
	}
	u.Scheme = strings.ToLower(u.Scheme)
	u.Host = strings.ToLower(u.Host)
	if ip := net.ParseIP(strings.Trim(host, "[]")); ip == nil && strings.Contains(host, ":") {
		return nil, "", bad("invalid host")
	}
	return u, backendKey(u), nil
}

// wantScheme is the complaint about a URL that does not start with http://
// or https://.
const wantScheme = "want an http:// or https:// URL"

// schemeProblem returns what is wrong with the scheme of rawURL, or "" if it
// starts with http:// or https:// (in any case). It runs before url.Parse,
// whose complaints about the commonest mistake, a bare "10.0.0.1:8080",
// ("first path segment in URL cannot contain colon") or "localhost:8080"
// (parsed as scheme "localhost") say nothing of what was meant.
func schemeProblem(rawURL string) string {
	scheme, _, ok := strings.Cut(rawURL, "://")
	switch {
	case ok && (strings.EqualFold(scheme, "http") || strings.EqualFold(scheme, "https")):
		return ""
	case ok && scheme != "" && !strings.ContainsAny(scheme, "/?#@"):
		return fmt.Sprintf("%s, not %s://", wantScheme, scheme)
	}
	lower := strings.ToLower(rawURL)
	if strings.HasPrefix(lower, "http:") || strings.HasPrefix(lower, "https:") {
		return wantScheme // "http:/x", "http:x": a slash short
	}
	if c := rawURL[0]; c == '[' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' {
		// A bare host or host:port: show what was probably meant.
		return fmt.Sprintf("%s, such as %q", wantScheme, "http://"+redactRaw(rawURL))
	}
	return wantScheme
}

// backendKey is the identity of a backend URL in a pool, computed once in
// NewBackend so that every look-up by URL (Pool.Get, Remove, Drain,
// SetWeight, SetMaintenance, Update, the status page's actions) compares
// like with like. It is the URL reduced to what names one server: scheme
// and host in lower case (parseBackendURL has done that), the port in
// decimal without leading zeros and dropped when it is the scheme's default
// (80 for http, 443 for https: RFC 3986 §6.2.3 scheme-based normalization),
// and the path without a trailing slash. So "HTTP://X:80/", "http://x:80"
// and "http://x" are one backend, and so are "http://[::1]:80" and
// "http://[::1]"; "http://x:443" and "https://x" are not.
func backendKey(u *url.URL) string {
	host := u.Host
	if port := u.Port(); port != "" {
		host = host[:len(host)-len(port)-1] // keeps an IPv6 literal's brackets
		if n, _ := strconv.Atoi(port); n != defaultPort(u.Scheme) {
			host += ":" + strconv.Itoa(n)
		}
	}
	p := u.EscapedPath()
	p = strings.TrimSuffix(p, "/")
	k := u.Scheme + "://" + host + p
	if u.RawQuery != "" {
		k += "?" + u.RawQuery
	}
	return k
}

// defaultPort is the port a URL of scheme means when it names none.
func defaultPort(scheme string) int {
	if scheme == "https" {
		return 443
	}
	return 80
}

// redactRaw hides what looks like credentials in an unparsed URL before it
// goes into an error message.
func redactRaw(s string) string {
	if i := strings.LastIndex(s, "@"); i >= 0 {
		if j := strings.Index(s, "://"); j >= 0 && j < i {
			return s[:j+3] + "xxxxx" + s[i:]
		}
		return "xxxxx" + s[i:]
	}
	return s
}

// URL returns the backend's URL. The caller must not modify it.
func (b *Backend) URL() *url.URL { return b.url }

// String returns the backend's URL.
func (b *Backend) String() string { return b.key }

// Key returns the backend's identity: its URL normalized once, in
// [NewBackend], as RFC 3986 §6.2.3 does for http and https: scheme and host
// in lower case, no default port (80 for http, 443 for https), a port in
// plain decimal, no trailing slash. "HTTP://Example.com:80/" has the key
// "http://example.com", as has "http://example.com"; "http://[::1]:80" has
// "http://[::1]". Two backends with one key cannot share a pool, and
// [Pool.Get], [Pool.Remove], [Pool.Drain], [Pool.SetWeight],
// [Pool.SetMaintenance] and [Pool.Update] find a backend by any spelling of
// its URL. Key implements [strategy.Endpoint]: [ConsistentHash] derives a
// backend's ring points from it, so every spelling of one server hashes
// alike. [Backend.URL] keeps the port as written.
func (b *Backend) Key() string { return b.key }

// Weight returns the configured weight. It implements [strategy.Endpoint].
func (b *Backend) Weight() int { return int(b.weight.Load()) }

// Backup reports whether the backend is a backup (see [AsBackup]).
func (b *Backend) Backup() bool { return b.backup.Load() }

// Active returns the number of attempts in flight on the backend, counting
// streamed responses and upgraded (WebSocket) connections until they close.
func (b *Backend) Active() int64 { return b.active.Load() }

// Alive reports whether the health checks let the backend take traffic:
// its active check (if any) says it is up and passive checks have not taken
// it out. A backend outside any pool is alive.
func (b *Backend) Alive() bool {
	p := b.pool.Load()
	if p == nil {
		return true
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	return b.alive && b.ejectedUntil.IsZero()
}

// waitIdleChan returns a channel closed once the backend has no attempt in
// flight, for Drain.
func (b *Backend) waitIdleChan() <-chan struct{} {
	b.idleMu.Lock()
	defer b.idleMu.Unlock()
	if b.idle == nil {
		b.idle = make(chan struct{})
	}
	ch := b.idle
	if b.active.Load() == 0 {
		close(ch)
		b.idle = nil
	}
	return ch
}

// release ends one attempt's claim on the backend and wakes Drain when it
// was the last one.
func (b *Backend) release() {
	if b.active.Add(-1) == 0 && b.noNew.Load() {
		b.idleMu.Lock()
		if b.idle != nil {
			close(b.idle)
			b.idle = nil
		}
		b.idleMu.Unlock()
	}
}

// resetForPool clears what a backend carried from a pool it left, before it
// joins one. Its owner's lock must be held.
func (b *Backend) resetForPool() {
	b.alive = true
	b.draining, b.maintenance, b.probing = false, false, false
	b.ejectedUntil, b.upSince = time.Time{}, time.Time{}
	b.noNew.Store(false)
}
