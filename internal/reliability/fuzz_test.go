package reliability

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/internal/xff"
)

// recorder is a RoundTripper that never dials: it writes each outgoing
// request to wire form, parses it back as the backend would, records it,
// and answers 200.
type recorder struct {
	mu   sync.Mutex
	seen []*http.Request
	errs []error
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	var buf bytes.Buffer
	if req.Body != nil {
		io.Copy(io.Discard, req.Body)
		req.Body.Close()
		req.Body = nil
	}
	err := req.Write(&buf)
	var back *http.Request
	if err == nil {
		back, err = http.ReadRequest(bufio.NewReader(&buf))
	}
	r.mu.Lock()
	if err != nil {
		r.errs = append(r.errs, err)
	} else {
		back.URL.Host = req.URL.Host // the address the transport dials
		back.URL.Scheme = req.URL.Scheme
		r.seen = append(r.seen, back)
	}
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return &http.Response{StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, Body: http.NoBody, Request: req}, nil
}

func (r *recorder) take() []*http.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.seen
	r.seen = nil
	return s
}

// FuzzB1_BackendConfig: backend URLs, weights and pool membership never
// panic; invalid ones are errors wrapping ErrInvalidBackend (or
// ErrDuplicateBackend); for valid ones the balancer only ever sends
// requests to pool members.
func FuzzB1_BackendConfig(f *testing.F) {
	for _, s := range []struct {
		u    string
		w    int
		opt  uint8
		dupe bool
	}{
		{"http://10.0.0.1:8080", 5, 0, false},
		{"https://api.internal/base", 1, 1, false},
		{"http://[::1]:80/x/", 1000, 2, true},
		{"http://a:0", 1, 0, false},
		{"http://a:65536", 1, 0, false},
		{"ftp://a", 1, 0, false},
		{"http://user:pw@a", 1, 0, false},
		{"http://a#frag", 1, 0, false},
		{"http://", 1, 0, false},
		{"", 0, 0, false},
		{"http://a", -1, 0, false},
		{"http://a", 1 << 62, 0, false},
		{"http://a:8080?x=1", 2, 3, true},
		{"HTTP://A:80/", 1, 0, true},
		{"http://[fe80::1%25eth0]:80", 1, 0, false},
		{"http://a b", 1, 0, false},
		{"//a", 1, 0, false},
		{"http:a", 1, 0, false},
	} {
		f.Add(s.u, s.w, s.opt, s.dupe)
	}
	f.Fuzz(func(t *testing.T, raw string, weight int, opt uint8, dupe bool) {
		opts := []lb.BackendOption{lb.WithWeight(weight)}
		if opt&1 != 0 {
			opts = append(opts, lb.AsBackup())
		}
		b, err := lb.NewBackend(raw, opts...)
		if weight < 1 || weight > lb.MaxWeight {
			if err == nil {
				t.Fatalf("NewBackend(%q, weight %d) accepted the weight", raw, weight)
			}
		}
		if err != nil {
			if !errors.Is(err, lb.ErrInvalidBackend) {
				t.Fatalf("NewBackend(%q): error %v does not wrap ErrInvalidBackend", raw, err)
			}
			return
		}
		u := b.URL()
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || b.Weight() != weight {
			t.Fatalf("NewBackend(%q) = %v (weight %d)", raw, u, b.Weight())
		}
		fixed, _ := lb.NewBackend("http://127.0.0.1:9")
		members := []*lb.Backend{b, fixed}
		if dupe {
			d, err := lb.NewBackend(raw)
			if err != nil {
				t.Fatalf("second NewBackend(%q): %v", raw, err)
			}
			members = append(members, d)
		}
		pool, err := lb.NewPool(members...)
		if dupe {
			if !errors.Is(err, lb.ErrDuplicateBackend) {
				t.Fatalf("NewPool with %q twice: %v", raw, err)
			}
			pool, err = lb.NewPool(b, fixed)
		}
		if err != nil {
			if b.Key() == fixed.Key() && errors.Is(err, lb.ErrDuplicateBackend) {
				return
			}
			t.Fatalf("NewPool: %v", err)
		}
		rec := &recorder{}
		strat := []lb.Strategy{lb.RoundRobin(), lb.SmoothWeighted(), lb.LeastConn(), lb.ConsistentHash(lb.PathKey())}[int(opt>>1)%4]
		bal := lb.New(pool, strat, lb.WithTransport(rec))
		defer bal.Close()
		for i := range 4 {
			if i == 2 {
				pool.SetWeight(raw, 1+int(opt)%lb.MaxWeight)
			}
			w := httptest.NewRecorder()
			bal.ServeHTTP(w, httptest.NewRequest("GET", "http://lb/p"+string(rune('a'+i)), nil))
		}
		allowed := map[string]bool{u.Host: true, fixed.URL().Host: true}
		for _, r := range rec.take() {
			if !allowed[r.URL.Host] {
				t.Fatalf("request sent to %q, not a pool member", r.URL.Host)
			}
		}
		_ = bal.Stats()
	})
}

// FuzzKeyFuncs: the key functions never panic, whatever the request.
func FuzzKeyFuncs(f *testing.F) {
	f.Add([]byte("GET /a?b=c HTTP/1.1\r\nHost: x\r\nCookie: s=1; t=2\r\nX-K: v\r\n\r\n"), "X-K", "10.0.0.1:5")
	f.Add([]byte("GET http://x/%zz?%%%=;; HTTP/1.1\r\nHost: x\r\nCookie: ;;;=\"\r\n\r\n"), "cookie", "")
	f.Add([]byte("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"), "", "[::1]:1")
	f.Add([]byte("CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\n"), "s", "garbage")
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\nX-K:\r\nX-K: two\r\n\r\n"), "x-k", "[fe80::1%eth0]:80")
	f.Fuzz(func(t *testing.T, raw []byte, name, remote string) {
		keys := []lb.KeyFunc{lb.HeaderKey(name), lb.CookieKey(name), lb.ClientIPKey(), lb.PathKey(), lb.QueryKey(name)}
		if r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw))); err == nil {
			r.RemoteAddr = remote
			for _, k := range keys {
				k(r)
			}
		}
		// Requests made by hand can lack what a server would set.
		bare := &http.Request{Header: http.Header{textproto.CanonicalMIMEHeaderKey(name): {string(raw)}, "Cookie": {string(raw)}}, RemoteAddr: remote}
		for _, k := range keys {
			k(bare)
		}
		bare.URL = &url.URL{Path: string(raw), RawQuery: string(raw)}
		for _, k := range keys {
			k(bare)
		}
	})
}

// FuzzS3_TrustedChain: the X-Forwarded-For policy never panics, returns
// canonical IP addresses only, nothing to the left of the first untrusted
// one, and only a suffix of what it was given.
func FuzzS3_TrustedChain(f *testing.F) {
	f.Add("1.2.3.4, 10.0.0.1", "10.0.0.2", "10.0.0.0/8", "")
	f.Add("6.6.6.6, 7.7.7.7", "8.8.8.8, 127.0.0.1", "127.0.0.0/8", "8.8.8.0/24")
	f.Add("unknown, 10.1.1.1", "", "10.0.0.0/8", "::/0")
	f.Add("[2001:db8::1]:80, ::ffff:10.0.0.1", "2001:db8::2", "2001:db8::/32", "10.0.0.0/8")
	f.Add(",,, ,", " , ", "0.0.0.0/0", "")
	f.Add("1.2.3.4:99999, 1.2.3.4:", "[::1]", "::1/128", "1.2.3.4/32")
	f.Add("fe80::1%eth0", "10.0.0.1", "10.0.0.0/8", "")
	f.Fuzz(func(t *testing.T, l1, l2, p1, p2 string) {
		var trust []netip.Prefix
		for _, p := range []string{p1, p2} {
			if pr, err := netip.ParsePrefix(p); err == nil {
				trust = append(trust, pr)
			}
		}
		lines := []string{l1, l2}
		checkChain(t, lines, trust, xff.TrustedChain(lines, trust))
		checkChain(t, lines[:1], trust, xff.TrustedChain(lines[:1], trust))
	})
}

// FuzzS5_RequestThroughBalancer: a request with random method, target,
// Host, Connection, X-Forwarded-* and a hash-key header goes through a
// balancer. Only pool members get it (I3, S4/S5); no hop-by-hop header
// crosses and the headers the balancer sets are the ones the backend sees
// (S1, S2, S3: the peer address, not the client's claim); the backend's
// Host is its own and X-Forwarded-Host the client's.
func FuzzS5_RequestThroughBalancer(f *testing.F) {
	f.Add("GET", "/", "x", "keep-alive", "1.2.3.4", "X-Key", "v")
	f.Add("GET", "http://169.254.169.254/latest", "169.254.169.254", "X-Forwarded-For, X-Forwarded-Host, X-Real-IP", "6.6.6.6", "X-Real-IP", "6.6.6.6")
	f.Add("POST", "//10.0.0.1/x", "10.0.0.1:22", ",X-Key,,Forwarded", "", "Forwarded", "for=6.6.6.6")
	f.Add("CONNECT", "169.254.169.254:80", "169.254.169.254:80", "Upgrade", "::1", "Upgrade", "websocket")
	f.Add("OPTIONS", "*", "localhost:1", "Te, Trailer", "1.1.1.1, 2.2.2.2", "Te", "trailers, gzip")
	f.Add("GET", "/@evil.example/..%2f", "evil.example", "close", "", "X-Forwarded-Proto", "https")
	f.Add("PUT", "/a?b=1;c=2", "x", "Keep-Alive, Proxy-Connection", "", "Proxy-Authorization", "Basic eDp5")
	hosts := []string{"10.99.0.1:80", "10.99.0.2:8080"}
	f.Fuzz(func(t *testing.T, method, target, host, conn, xff, name, value string) {
		raw := method + " " + target + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: " + conn +
			"\r\nX-Forwarded-For: " + xff + "\r\nX-Forwarded-Host: evil.example\r\nX-Real-IP: 6.6.6.6\r\n" +
			name + ": " + value + "\r\nX-Key: " + value + "\r\n\r\n"
		in, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return // the server would have refused it
		}
		if in.Host == "" && in.URL.Host == "" {
			return
		}
		in.RemoteAddr = "192.0.2.1:1234"
		rec := &recorder{}
		pool := memPool(t, hosts)
		bal := lb.New(pool, lb.ConsistentHash(lb.HeaderKey("X-Key")), lb.WithTransport(rec))
		defer bal.Close()
		w := httptest.NewRecorder()
		bal.ServeHTTP(w, in)
		out := rec.take()
		if len(out) > 1 {
			t.Fatalf("one request became %d", len(out))
		}
		if len(out) == 0 {
			return // refused before any backend (e.g. a header the transport would not send)
		}
		o := out[0]
		if o.URL.Host != hosts[0] && o.URL.Host != hosts[1] {
			t.Fatalf("request for %q / Host %q sent to %q", target, host, o.URL.Host)
		}
		if o.Host != o.URL.Host {
			t.Fatalf("backend sees Host %q, not its own %q", o.Host, o.URL.Host)
		}
		upgrade := isUpgradeReq(in.Header)
		named := connectionTokens(in.Header)
		for _, k := range hopHeaders {
			v, ok := o.Header[k]
			switch {
			case !ok:
			case k == "Te" && len(v) == 1 && v[0] == "trailers":
			case upgrade && (k == "Upgrade" || k == "Connection"):
			default:
				t.Fatalf("hop-by-hop %s: %q reached the backend (client Connection %q)", k, v, conn)
			}
		}
		set := map[string]bool{"X-Forwarded-For": true, "X-Forwarded-Host": true, "X-Forwarded-Proto": true}
		for _, k := range named {
			if set[k] || (upgrade && k == "Upgrade") || (k == "Te" && strings.Join(o.Header["Te"], ",") == "trailers") {
				continue
			}
			if v, ok := o.Header[k]; ok {
				t.Fatalf("%s named in Connection reached the backend: %q", k, v)
			}
		}
		if got := o.Header["X-Forwarded-For"]; len(got) != 1 || got[0] != "192.0.2.1" {
			t.Fatalf("X-Forwarded-For %q, want the peer 192.0.2.1", got)
		}
		if got := o.Header["X-Forwarded-Proto"]; len(got) != 1 || got[0] != "http" {
			t.Fatalf("X-Forwarded-Proto %q", got)
		}
		// Whitespace around a field value is not part of it (RFC 9110
		// §5.5), and a recorded request may lose it.
		if got := o.Header.Get("X-Forwarded-Host"); strings.TrimSpace(got) != strings.TrimSpace(in.Host) {
			t.Fatalf("X-Forwarded-Host %q, want the client's Host %q", got, in.Host)
		}
		for _, k := range []string{"X-Real-Ip", "Forwarded"} {
			if v, ok := o.Header[k]; ok {
				t.Fatalf("client's %s: %q reached the backend", k, v)
			}
		}
	})
}

func connectionTokens(h http.Header) []string {
	var out []string
	for _, v := range h["Connection"] {
		for _, tok := range strings.Split(v, ",") {
			if tok = textproto.TrimString(tok); tok != "" {
				out = append(out, textproto.CanonicalMIMEHeaderKey(tok))
			}
		}
	}
	return out
}

func isUpgradeReq(h http.Header) bool {
	for _, t := range connectionTokens(h) {
		if t == "Upgrade" {
			return h.Get("Upgrade") != ""
		}
	}
	return false
}
