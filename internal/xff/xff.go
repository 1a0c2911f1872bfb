// Package xff reads X-Forwarded-For chains: which of the addresses a
// request's proxies appended can be believed.
package xff

import (
	"net/netip"
	"strings"
)

// TrustedChain returns the part of an X-Forwarded-For header (all its
// lines, in order) that can be believed when it comes from a trusted
// proxy: walking from the right, every address inside trust, then the
// first address outside it (the client), and nothing further left. An entry
// that is not an IP address (an optional port is allowed) ends the walk
// and is dropped. The result holds canonical address strings.
func TrustedChain(lines []string, trust []netip.Prefix) []string {
	var entries []string
	for _, l := range lines {
		for _, e := range strings.Split(l, ",") {
			entries = append(entries, strings.TrimSpace(e))
		}
	}
	var keep []netip.Addr
	for i := len(entries) - 1; i >= 0; i-- {
		a, ok := parseForwardedAddr(entries[i])
		if !ok {
			break
		}
		keep = append(keep, a)
		if !Trusted(trust, a) {
			break
		}
	}
	out := make([]string, 0, len(keep)+1)
	for i := len(keep) - 1; i >= 0; i-- {
		out = append(out, keep[i].String())
	}
	return out
}

// parseForwardedAddr parses one X-Forwarded-For entry: an IPv4 or IPv6
// address, optionally with a port ("1.2.3.4:5", "[::1]:5").
// An IPv6 zone ("fe80::1%eth0") is refused: it is free text that would
// pass to the backend unchecked.
func parseForwardedAddr(s string) (netip.Addr, bool) {
	a, ok := netip.Addr{}, false
	if x, err := netip.ParseAddr(s); err == nil {
		a, ok = x, true
	} else if ap, err := netip.ParseAddrPort(s); err == nil {
		a, ok = ap.Addr(), true
	} else if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if x, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			a, ok = x, true
		}
	}
	if !ok || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// Trusted reports whether a is inside one of the prefixes of trust.
func Trusted(trust []netip.Prefix, a netip.Addr) bool {
	for _, p := range trust {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
