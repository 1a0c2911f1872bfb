package lb

import (
	"net"
	"net/http/httputil"
	"net/netip"
	"strings"

	"github.com/tinylb/lb/internal/xff"
)

// WithTrustedProxies names the proxies in front of the balancer whose
// forwarding headers may be believed. By default no one is trusted: the
// backend sees X-Forwarded-For set to the address the request came from,
// and X-Forwarded-Host and X-Forwarded-Proto as the balancer saw them;
// whatever the client sent in X-Forwarded-*, Forwarded or X-Real-IP is
// dropped, so a client cannot spoof its address.
//
// When a request comes from an address in one of prefixes, the addresses
// its X-Forwarded-For lists are kept from the right up to and including the
// first one that is not itself trusted (the real client); entries further
// left were written by the client and are dropped, as are entries that are
// not IP addresses. The connecting proxy's address is appended. Its
// X-Forwarded-Host and X-Forwarded-Proto are kept too.
func WithTrustedProxies(prefixes ...netip.Prefix) Option {
	return optionFunc(func(o *options) {
		o.trusted = append(o.trusted, prefixes...)
	})
}

// rewrite is the ReverseProxy's Rewrite hook, which relay calls too. Both
// have already removed hop-by-hop headers, Forwarded and X-Forwarded-*
// from pr.Out, so a client's "Connection: X-Forwarded-For" cannot remove
// what is set here.
// It also removes any h2c upgrade (dropH2C).
// The target URL is set per attempt by attemptTransport, since a retry
// goes to another backend.
func (b *Balancer) rewrite(pr *httputil.ProxyRequest) {
	dropH2C(pr)
	if len(pr.Out.Header["X-Real-Ip"]) > 0 {
		pr.Out.Header.Del("X-Real-Ip")
	}
	if len(b.o.trusted) > 0 {
		if peer, ok := remoteAddr(pr.In.RemoteAddr); ok && xff.Trusted(b.o.trusted, peer) {
			forwardTrusted(pr, b.o.trusted, peer)
			return
		}
	}
	setXForwarded(pr)
}

// setXForwarded is httputil.ProxyRequest.SetXForwarded for a request whose
// X-Forwarded-* headers ReverseProxy has already removed (Rewrite mode),
// with the three values in one allocation instead of three. Each header
// gets a slice of length and capacity 1, so appending to one never writes
// into another.
func setXForwarded(pr *httputil.ProxyRequest) {
	h := pr.Out.Header
	v := make([]string, 3)
	if ip, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
		v[0] = ip
		h["X-Forwarded-For"] = v[0:1:1]
	} else {
		delete(h, "X-Forwarded-For")
	}
	v[1] = pr.In.Host
	h["X-Forwarded-Host"] = v[1:2:2]
	v[2] = "http"
	if pr.In.TLS != nil {
		v[2] = "https"
	}
	h["X-Forwarded-Proto"] = v[2:3:3]
}

// forwardTrusted sets the forwarding headers of a request from a trusted
// proxy.
func forwardTrusted(pr *httputil.ProxyRequest, trust []netip.Prefix, peer netip.Addr) {
	chain := xff.TrustedChain(pr.In.Header["X-Forwarded-For"], trust)
	chain = append(chain, peer.String())
	pr.Out.Header["X-Forwarded-For"] = []string{strings.Join(chain, ", ")}
	if h := pr.In.Header.Get("X-Forwarded-Host"); h != "" {
		pr.Out.Header.Set("X-Forwarded-Host", h)
	} else {
		pr.Out.Header.Set("X-Forwarded-Host", pr.In.Host)
	}
	switch p := strings.ToLower(strings.TrimSpace(pr.In.Header.Get("X-Forwarded-Proto"))); {
	case p == "http" || p == "https":
		pr.Out.Header.Set("X-Forwarded-Proto", p)
	case pr.In.TLS != nil:
		pr.Out.Header.Set("X-Forwarded-Proto", "https")
	default:
		pr.Out.Header.Set("X-Forwarded-Proto", "http")
	}
}

func remoteAddr(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	return netip.Addr{}, false
}
