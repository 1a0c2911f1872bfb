package reliability

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/internal/faultkit"
	"github.com/tinylb/lb/internal/rawhttp"
	"github.com/tinylb/lb/internal/xff"
)

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// S3: spoofed forwarding headers from an untrusted peer are dropped and
// the real peer address is authoritative; with trusted proxies, only hops
// written by trusted addresses count (right to left, up to the first
// untrusted one).
func TestS3_ForwardedForTrust(t *testing.T) {
	spoof := "X-Forwarded-For: 6.6.6.6, 7.7.7.7\r\nX-Forwarded-For: 8.8.8.8\r\nForwarded: for=6.6.6.6;proto=https\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n"
	for _, tc := range []struct {
		name                 string
		trusted              []netip.Prefix
		extra                string // more headers
		xff, xfproto, xfhost string // what the backend must see
	}{
		{name: "untrusted", xff: "127.0.0.1", xfproto: "http", xfhost: "front.example"},
		{name: "trust other", trusted: prefixes("10.0.0.0/8"), xff: "127.0.0.1", xfproto: "http", xfhost: "front.example"},
		{name: "trusted peer, untrusted hops", trusted: prefixes("127.0.0.0/8"), xff: "8.8.8.8, 127.0.0.1", xfproto: "https", xfhost: "evil.example"},
		{name: "trusted chain", trusted: prefixes("127.0.0.0/8", "8.8.8.0/24", "7.7.7.7/32"), xff: "6.6.6.6, 7.7.7.7, 8.8.8.8, 127.0.0.1", xfproto: "https", xfhost: "evil.example"},
		{name: "garbage ends the walk", trusted: prefixes("127.0.0.0/8", "10.0.0.0/8"),
			extra: "X-Forwarded-For: 1.1.1.1, not-an-ip, 10.1.1.1\r\n", xff: "10.1.1.1, 127.0.0.1", xfproto: "https", xfhost: "evil.example"},
		{name: "ports and mapped addresses", trusted: prefixes("127.0.0.0/8", "10.0.0.0/8"),
			extra: "X-Forwarded-For: 9.9.9.9:1234, [::ffff:10.2.2.2]:80, 10.3.3.3\r\n", xff: "9.9.9.9, 10.2.2.2, 10.3.3.3, 127.0.0.1", xfproto: "https", xfhost: "evil.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []lb.Option
			if tc.trusted != nil {
				opts = append(opts, lb.WithTrustedProxies(tc.trusted...))
			}
			e := newEnv(t, envConfig{n: 1, opts: opts, backend: func(int) faultkit.Config { return faultkit.Config{Keep: true} }})
			id := "s3-" + strings.ReplaceAll(tc.name, " ", "-")
			headers := spoof
			if tc.extra != "" {
				headers = "Forwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n" + tc.extra
			}
			resp := rawhttp.Do(t, e.front.Addr, "GET / HTTP/1.1\r\nHost: front.example\r\nX-Req-Id: "+id+"\r\n"+headers+"Connection: close\r\n\r\n")
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			h := e.backends[0].SeenID(id)[0].Header
			if got := strings.Join(h["X-Forwarded-For"], " | "); got != tc.xff {
				t.Errorf("S3: X-Forwarded-For %q, want %q", got, tc.xff)
			}
			if got := strings.Join(h["X-Forwarded-Proto"], " | "); got != tc.xfproto {
				t.Errorf("S3: X-Forwarded-Proto %q, want %q", got, tc.xfproto)
			}
			if got := strings.Join(h["X-Forwarded-Host"], " | "); got != tc.xfhost {
				t.Errorf("S3: X-Forwarded-Host %q, want %q", got, tc.xfhost)
			}
			for _, k := range []string{"Forwarded", "X-Real-Ip"} {
				if v, ok := h[k]; ok {
					t.Errorf("S3: client's %s: %q reached the backend", k, v)
				}
			}
		})
	}
}

// S3 (parser): TrustedChain on hand-picked lines; the fuzz target
// FuzzS3_TrustedChain checks its invariants on random ones.
func TestS3_TrustedChainTable(t *testing.T) {
	trust := prefixes("10.0.0.0/8", "2001:db8::/32")
	for _, tc := range []struct {
		lines []string
		want  []string
	}{
		{nil, []string{}},
		{[]string{""}, []string{}},
		{[]string{"1.2.3.4"}, []string{"1.2.3.4"}},
		{[]string{"1.2.3.4, 10.0.0.1"}, []string{"1.2.3.4", "10.0.0.1"}},
		{[]string{"5.5.5.5, 1.2.3.4, 10.0.0.1"}, []string{"1.2.3.4", "10.0.0.1"}},
		{[]string{"5.5.5.5", "1.2.3.4", "10.0.0.1, 10.0.0.2"}, []string{"1.2.3.4", "10.0.0.1", "10.0.0.2"}},
		{[]string{"1.2.3.4, unknown, 10.0.0.1"}, []string{"10.0.0.1"}},
		{[]string{"1.2.3.4,,10.0.0.1"}, []string{"10.0.0.1"}},
		{[]string{"[2001:db8::1]:80, 2001:DB8::2"}, []string{"2001:db8::1", "2001:db8::2"}},
		{[]string{"::ffff:10.0.0.9"}, []string{"10.0.0.9"}},
		{[]string{"10.0.0.1 , 10.0.0.2"}, []string{"10.0.0.1", "10.0.0.2"}},
		// An IPv6 zone is free text ("fe80::1%<script>" parses) and means
		// nothing off the host: such an entry is not an address to pass on.
		{[]string{"fe80::1%<script>"}, []string{}},
		{[]string{"1.2.3.4, fe80::1%eth0, 10.0.0.1"}, []string{"10.0.0.1"}},
	} {
		got := xff.TrustedChain(tc.lines, trust)
		if !slices.Equal(got, tc.want) {
			tag := ""
			if strings.Contains(strings.Join(tc.lines, ""), "%") {
				tag = "BUG(S3): IPv6 zone kept: "
			}
			t.Errorf("%sTrustedChain(%q) = %q, want %q", tag, tc.lines, got, tc.want)
		}
	}
}

// checkChain checks the invariants of TrustedChain's output: canonical IP
// addresses only; every entry but the first is trusted (nothing to the left
// of the first untrusted address); the output is a suffix of the input's
// parseable entries.
func checkChain(t testing.TB, lines []string, trust []netip.Prefix, out []string) {
	t.Helper()
	for i, s := range out {
		a, err := netip.ParseAddr(s)
		if err != nil {
			t.Fatalf("TrustedChain(%q): entry %q is not an IP address", lines, s)
		}
		if a.String() != s || a.Is4In6() {
			t.Fatalf("TrustedChain(%q): entry %q is not canonical (%q)", lines, s, a.String())
		}
		if a.Zone() != "" {
			t.Fatalf("BUG(S3): TrustedChain(%q): entry %q carries an IPv6 zone, free text from the header", lines, s)
		}
		if i > 0 && !contains(trust, a) {
			t.Fatalf("TrustedChain(%q) = %q: untrusted %q is not the leftmost entry", lines, out, s)
		}
	}
	// The entries, right to left, must match the input's right end.
	var entries []string
	for _, l := range lines {
		for _, e := range strings.Split(l, ",") {
			entries = append(entries, strings.TrimSpace(e))
		}
	}
	if len(out) > len(entries) {
		t.Fatalf("TrustedChain(%q) = %q: more entries than the input", lines, out)
	}
	for i := range out {
		in := entries[len(entries)-len(out)+i]
		if !sameAddr(in, out[i]) {
			t.Fatalf("TrustedChain(%q) = %q: entry %d %q does not come from input entry %q", lines, out, i, out[i], in)
		}
	}
}

func contains(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// sameAddr reports whether the input entry in names the address out.
func sameAddr(in, out string) bool {
	want, err := netip.ParseAddr(out)
	if err != nil {
		return false
	}
	try := []string{in, strings.TrimSuffix(strings.TrimPrefix(in, "["), "]")}
	if ap, err := netip.ParseAddrPort(in); err == nil {
		try = append(try, ap.Addr().String())
	}
	for _, s := range try {
		if a, err := netip.ParseAddr(s); err == nil && a.Unmap() == want {
			return true
		}
	}
	return false
}
