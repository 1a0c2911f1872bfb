package health

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Defaults of an [HTTPCheck].
const (
	defaultPath      = "/healthz"
	defaultStatusMin = 200
	defaultStatusMax = 399
	defaultMaxBody   = 64 << 10
)

// HTTPCheck is a [Checker] that sends one HTTP request to the target and
// passes when the response status is in range and, if Body is set, the
// response body contains Body. The zero value checks GET /healthz for a
// 2xx or 3xx status on the default [Schedule].
//
// Redirects are never followed: a 3xx response is judged by its status.
// Unless Transport is set, checks use a transport of their own, without
// keep-alives or proxy, so that they never take or hold the connections
// that real requests use and leave no idle connections behind.
//
// An HTTPCheck holds no state, like a [TCPCheck]: it works as a value or
// as a pointer, and a copy checks as the original does. It is safe for
// concurrent use by many targets; its fields must not change while it is
// in use.
type HTTPCheck struct {
	// Path of the request, joined to the path of the target. It must
	// start with '/' and may end with a query ("/status?full=1"); it is
	// used as written, so it must already be escaped. Default "/healthz".
	Path string
	// Method of the request. Default GET.
	Method string
	// Host overrides the Host header of the request. Default: the host of
	// the target (or a "Host" entry in Header).
	Host string
	// Header holds extra request headers. Default none.
	Header http.Header

	// Interval, Timeout, Rise, Fall, Jitter and StartDown make the
	// [Schedule] that [HTTPCheck.Schedule] returns; zero means the
	// Schedule's default. Check itself applies Timeout too.
	Interval  time.Duration
	Timeout   time.Duration
	Rise      int
	Fall      int
	Jitter    float64
	StartDown bool

	// StatusMin and StatusMax bound, inclusively, the statuses that pass.
	// Default 200 and 399 respectively.
	StatusMin, StatusMax int
	// Body, when set, is a string that the response body must contain.
	// Default "": the body is not read at all.
	Body string
	// MaxBody is the most bytes of the response body that are read while
	// looking for Body; past that the check fails. Default 64 KiB.
	MaxBody int64

	// Transport sends the requests. Default: an [http.Transport] of the
	// package's, shared by the HTTPChecks of the same Timeout, with
	// keep-alives off, no proxy, and dial and TLS handshake timeouts of
	// Timeout. A Transport given here is used as it is; it should not
	// follow redirects itself.
	Transport http.RoundTripper
}

var _ interface {
	Checker
	Scheduler
} = HTTPCheck{}

// Schedule returns the [Schedule] made of c's Interval, Timeout, Rise,
// Fall, Jitter and StartDown fields.
func (c HTTPCheck) Schedule() Schedule {
	return Schedule{
		Interval:  c.Interval,
		Timeout:   c.Timeout,
		Rise:      c.Rise,
		Fall:      c.Fall,
		Jitter:    c.Jitter,
		StartDown: c.StartDown,
	}
}

// Validate reports the first impossible setting of c, naming its field: a
// Path that does not start with '/', a method that is not a token, a Host
// with spaces, controls or '/', a Header name that is not a token or a
// value with CR, LF or NUL (the transport would refuse every request), a
// StatusMin above StatusMax or outside 100–999, a negative MaxBody, a Body
// with method HEAD, or an invalid [HTTPCheck.Schedule]. The zero HTTPCheck
// is valid.
func (c HTTPCheck) Validate() error {
	lo, hi := c.statusRange()
	switch {
	case c.Path != "" && !strings.HasPrefix(c.Path, "/"):
		return fmt.Errorf("health: Path %q does not start with '/'", c.Path)
	case c.Method != "" && !isToken(c.Method):
		return fmt.Errorf("health: invalid Method %q", c.Method)
	case strings.ContainsFunc(c.Host, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '/' }):
		return fmt.Errorf("health: invalid Host %q", c.Host)
	case lo < 100 || lo > 999:
		return fmt.Errorf("health: StatusMin %d outside 100-999", lo)
	case hi < 100 || hi > 999:
		return fmt.Errorf("health: StatusMax %d outside 100-999", hi)
	case lo > hi:
		return fmt.Errorf("health: StatusMin %d above StatusMax %d", lo, hi)
	case c.MaxBody < 0:
		return fmt.Errorf("health: negative MaxBody %d", c.MaxBody)
	case c.Body != "" && c.method() == http.MethodHead:
		return fmt.Errorf("health: Body %q set with Method HEAD, whose responses have none", c.Body)
	}
	if err := validHeader(c.Header); err != nil {
		return err
	}
	return c.Schedule().Validate()
}

// validHeader reports the first header of h, in name order, that no
// request could carry.
func validHeader(h http.Header) error {
	if len(h) == 0 {
		return nil
	}
	for _, k := range slices.Sorted(maps.Keys(h)) {
		if !isToken(k) {
			return fmt.Errorf("health: invalid Header name %q", k)
		}
		for _, v := range h[k] {
			if strings.ContainsAny(v, "\r\n\x00") {
				return fmt.Errorf("health: Header %q: value %q contains CR, LF or NUL", k, v)
			}
		}
	}
	return nil
}

// Check sends one request to target and reports why it failed, or nil. It
// returns when the response is judged, when Timeout has passed or when ctx
// ends, whichever comes first. An invalid c fails every check with the
// error of [HTTPCheck.Validate].
func (c HTTPCheck) Check(ctx context.Context, target *url.URL) error {
	if err := c.Validate(); err != nil {
		return err
	}
	s := c.Schedule().WithDefaults()
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()

	method := c.method()
	u := c.url(target)
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return fmt.Errorf("health: %s %s: %w", method, u, err)
	}
	for k, v := range c.Header {
		req.Header[k] = slices.Clone(v)
	}
	switch {
	case c.Host != "":
		req.Host = c.Host
	case c.Header.Get("Host") != "":
		req.Host = c.Header.Get("Host")
	}
	if target.User != nil {
		pass, _ := target.User.Password()
		req.SetBasicAuth(target.User.Username(), pass)
	}

	rt := c.Transport
	if rt == nil {
		rt = checkTransport(s.Timeout)
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("health: %s %s: %w", method, u, err)
	}
	defer resp.Body.Close()

	lo, hi := c.statusRange()
	if resp.StatusCode < lo || resp.StatusCode > hi {
		return fmt.Errorf("health: %s %s: status %d outside %d-%d", method, u, resp.StatusCode, lo, hi)
	}
	if c.Body == "" {
		return nil
	}
	limit := c.MaxBody
	if limit <= 0 {
		limit = defaultMaxBody
	}
	found, err := contains(resp.Body, []byte(c.Body), limit)
	switch {
	case found:
		return nil
	case err != nil:
		return fmt.Errorf("health: %s %s: reading body: %w", method, u, err)
	default:
		return fmt.Errorf("health: %s %s: body does not contain %q in its first %d bytes", method, u, c.Body, limit)
	}
}

func (c HTTPCheck) method() string {
	if c.Method == "" {
		return http.MethodGet
	}
	return c.Method
}

func (c HTTPCheck) statusRange() (lo, hi int) {
	lo, hi = c.StatusMin, c.StatusMax
	if lo == 0 {
		lo = defaultStatusMin
	}
	if hi == 0 {
		hi = defaultStatusMax
	}
	return lo, hi
}

// url returns the URL to check on target: its scheme and host, and its
// path joined with c.Path.
func (c HTTPCheck) url(target *url.URL) string {
	p := c.Path
	if p == "" {
		p = defaultPath
	}
	scheme := target.Scheme
	if scheme == "" {
		scheme = "http"
	}
	return scheme + "://" + target.Host + strings.TrimSuffix(target.EscapedPath(), "/") + p
}

// checkTransports holds the default transports of HTTPChecks, one per
// Timeout. They keep no idle connection, so they hold no goroutine and
// nothing to close; there is one for each distinct Timeout in use, which
// a program has few of.
var checkTransports struct {
	mu sync.RWMutex // protects m
	m  map[time.Duration]*http.Transport
}

// checkTransport returns the default transport of checks with the given
// timeout. Its dial and TLS handshake have the timeout of their own: net/http
// dials apart from the request's context (so that another request may use
// the connection), and without it a dial to an address that never answers
// would outlive the check.
func checkTransport(timeout time.Duration) *http.Transport {
	ct := &checkTransports
	ct.mu.RLock()
	tr := ct.m[timeout]
	ct.mu.RUnlock()
	if tr != nil {
		return tr
	}
	ct.mu.Lock()
	defer ct.mu.Unlock()
	if tr = ct.m[timeout]; tr == nil {
		tr = &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: timeout, KeepAlive: -1}).DialContext,
			TLSHandshakeTimeout: timeout,
			DisableKeepAlives:   true,
			DisableCompression:  true, // MaxBody counts the bytes sent
		}
		if ct.m == nil {
			ct.m = make(map[time.Duration]*http.Transport)
		}
		ct.m[timeout] = tr
	}
	return tr
}

// contains reads r until it finds want, has read limit bytes, or fails.
// It never reads more than limit bytes, and holds only a few KiB of them.
func contains(r io.Reader, want []byte, limit int64) (bool, error) {
	switch {
	case len(want) == 0:
		return true, nil
	case int64(len(want)) > limit:
		return false, nil
	}
	keep := len(want) - 1 // bytes at the end of buf that may start a match
	buf := make([]byte, keep+4<<10)
	n := 0 // bytes held in buf
	for read := int64(0); read < limit; {
		room := min(int64(len(buf)-n), limit-read)
		m, err := r.Read(buf[n : n+int(room)])
		read += int64(m)
		n += m
		if bytes.Contains(buf[:n], want) {
			return true, nil
		}
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if n > keep {
			n = copy(buf, buf[n-keep:n])
		}
	}
	return false, nil
}

// isToken reports whether s is a non-empty RFC 9110 token, as a method
// must be.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b <= ' ' || b >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, b) >= 0 {
			return false
		}
	}
	return true
}
