package discovery

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"time"
)

// DNS defaults.
const (
	// DefaultRefresh is how often a DNS source looks its name up when the
	// records' TTLs do not ask for sooner.
	DefaultRefresh = 30 * time.Second
	// DefaultMinTTL is the shortest wait between two lookups, whatever the
	// TTLs say: a TTL of 0 must not turn a source into a query loop.
	DefaultMinTTL = time.Second
	// DefaultJitter is the fraction of each wait taken off at random, so
	// that the proxies of a fleet started together do not query together.
	DefaultJitter = 0.1
)

// ErrInvalidSource: a source's settings cannot work (an empty name, a port
// out of range, a scheme other than http or https, a negative interval).
// [DNSSource.Validate] reports it; Run returns it at once.
var ErrInvalidSource = errors.New("discovery: invalid source")

// DNSSource is a [Source] that polls DNS: the A and AAAA records of a host
// name ([DNS]) or the SRV records of a service ([SRV]).
//
// Each lookup waits for the next at the configured refresh interval, or
// sooner when the answer's records expire: the wait is the smallest TTL of
// the answer, bounded below by the minimum TTL (1 s) and above by the
// refresh interval, less a random jitter (never more). The standard
// library's resolver does not expose TTLs, so the source reads them from
// the DNS responses as they pass through the connections it dials for the
// resolver; an answer that came from /etc/hosts has no TTL and waits the
// refresh interval.
//
// Names are looked up as absolute names (a final dot is added): no search
// list applies, so "api" is not "api.default.svc.cluster.local".
//
// Failures never empty a pool: SERVFAIL, a timeout or a refused query is
// reported as an error wrapping [ErrLookup], and NXDOMAIN as an error
// wrapping [ErrNotFound], so the watcher keeps its last set; the next
// lookup comes after a backoff that starts at the minimum TTL and doubles
// up to the refresh interval. An answer with no record (NOERROR, no data)
// is an empty set, which the watcher ignores too unless [WithAllowEmpty].
// The source pushes a set when it differs from the last one it pushed.
type DNSSource struct {
	kind    string // "dns" or "srv"
	host    string // DNS: the host name; SRV: the name, or the domain of service and proto
	port    int
	service string
	proto   string
	o       dnsOptions
}

type dnsOptions struct {
	scheme  string
	refresh time.Duration
	minTTL  time.Duration
	jitter  float64
	server  string // "" for the system's resolvers
}

// DNSOption configures a [DNSSource].
type DNSOption interface {
	applyDNS(*dnsOptions)
}

type dnsOptionFunc func(*dnsOptions)

func (f dnsOptionFunc) applyDNS(o *dnsOptions) { f(o) }

// WithScheme sets the scheme of the backend URLs: "http" (the default) or
// "https".
func WithScheme(scheme string) DNSOption {
	return dnsOptionFunc(func(o *dnsOptions) { o.scheme = scheme })
}

// WithRefresh sets the longest wait between two lookups; default
// [DefaultRefresh]. Records with a shorter TTL are looked up sooner.
func WithRefresh(d time.Duration) DNSOption {
	return dnsOptionFunc(func(o *dnsOptions) { o.refresh = d })
}

// WithMinTTL sets the shortest wait between two lookups; default
// [DefaultMinTTL]. A TTL below it counts as it.
func WithMinTTL(d time.Duration) DNSOption {
	return dnsOptionFunc(func(o *dnsOptions) { o.minTTL = d })
}

// WithJitter sets the fraction, from 0 to 0.5, of each wait taken off at
// random; default [DefaultJitter]. A negative value means 0.
func WithJitter(f float64) DNSOption {
	return dnsOptionFunc(func(o *dnsOptions) { o.jitter = max(f, 0) })
}

// WithResolverAddr sends the queries to the DNS server at addr (such as
// "10.0.0.2:53") over UDP (TCP for answers too long for it), instead of
// the servers of /etc/resolv.conf.
func WithResolverAddr(addr string) DNSOption {
	return dnsOptionFunc(func(o *dnsOptions) { o.server = addr })
}

// DNS returns a source of the A and AAAA records of host: one target per
// address, http://ADDRESS:port (see [WithScheme]), weight 1.
func DNS(host string, port int, opts ...DNSOption) *DNSSource {
	return newDNSSource("dns", host, port, "", "", opts)
}

// SRV returns a source of the SRV records of _service._proto.name (RFC
// 2782), or of name itself when service and proto are both empty (name
// is then the whole "_http._tcp.example.com"). Each record's target is
// looked up (A and AAAA) and each of its addresses becomes a target with
// the record's port, as http://ADDRESS:PORT (see [WithScheme]):
//
//   - priority: the records of the lowest priority value are the
//     primaries; those of any higher value are backups ([lb.AsBackup]),
//     since a pool has two tiers where SRV has any number;
//   - weight: the backend's weight, 0 counting as 1 (RFC 2782's weight 0
//     means "very rarely chosen", not "never") and values above
//     [lb.MaxWeight] as lb.MaxWeight; each address of a target gets the
//     target's weight.
//
// A target that cannot be looked up fails the whole lookup (the watcher
// keeps its last set), rather than shrinking the pool on what is usually
// a transient failure. Metadata holds "srv_target", "srv_priority" and
// "srv_weight".
func SRV(service, proto, name string, opts ...DNSOption) *DNSSource {
	return newDNSSource("srv", name, 0, service, proto, opts)
}

func newDNSSource(kind, host string, port int, service, proto string, opts []DNSOption) *DNSSource {
	s := &DNSSource{kind: kind, host: host, port: port, service: service, proto: proto,
		o: dnsOptions{scheme: "http", refresh: DefaultRefresh, minTTL: DefaultMinTTL, jitter: DefaultJitter}}
	for _, o := range opts {
		if o != nil {
			o.applyDNS(&s.o)
		}
	}
	return s
}

// String names the source: "dns api.internal:8080" or "srv _http._tcp.api.internal".
func (s *DNSSource) String() string {
	if s.kind == "dns" {
		return fmt.Sprintf("dns %s:%d", s.host, s.port)
	}
	return "srv " + s.qname()
}

// qname is the absolute name looked up.
func (s *DNSSource) qname() string {
	n := s.host
	if s.kind == "srv" && (s.service != "" || s.proto != "") {
		n = "_" + s.service + "._" + s.proto + "." + n
	}
	if !strings.HasSuffix(n, ".") {
		n += "."
	}
	return n
}

// Validate reports settings that cannot work, wrapping [ErrInvalidSource].
func (s *DNSSource) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalidSource, s, fmt.Sprintf(format, a...))
	}
	o := s.o
	switch {
	case strings.Trim(s.host, ".") == "" || strings.ContainsAny(s.host, " \t\r\n/:@"):
		return bad("want a DNS name, such as api.internal")
	case s.kind == "dns" && (s.port < 1 || s.port > 65535):
		return bad("port %d: must be between 1 and 65535", s.port)
	case s.kind == "srv" && (s.service == "") != (s.proto == ""):
		return bad("give both service and proto (such as http and tcp), or neither")
	case o.scheme != "http" && o.scheme != "https":
		return bad("scheme %q: want http or https", o.scheme)
	case o.refresh <= 0:
		return bad("refresh %v: must be positive", o.refresh)
	case o.minTTL <= 0:
		return bad("minimum TTL %v: must be positive", o.minTTL)
	case o.jitter > 0.5:
		return bad("jitter %v: must be between 0 and 0.5", o.jitter)
	}
	if o.server != "" {
		if _, port, err := net.SplitHostPort(o.server); err != nil || port == "" {
			return bad("resolver %q: want host:port, such as 10.0.0.2:53", o.server)
		}
	}
	return nil
}

// Run looks the name up until ctx ends, pushing each new set and each
// failure. It returns ctx's error, or at once an error wrapping
// [ErrInvalidSource].
func (s *DNSSource) Run(ctx context.Context, push func([]Target, error)) error {
	if err := s.Validate(); err != nil {
		return err
	}
	var last []Target
	pushed := false
	backoff := s.o.minTTL
	for {
		set, ttl, err := s.lookup(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := s.o.refresh
		if err != nil {
			push(nil, err)
			wait = min(backoff, s.o.refresh)
			backoff *= 2
		} else {
			if !pushed || !slices.EqualFunc(set, last, sameTarget) {
				push(set, nil)
				last, pushed = set, true
			}
			backoff = s.o.minTTL
			if ttl >= 0 {
				wait = min(max(ttl, s.o.minTTL), s.o.refresh)
			}
		}
		wait -= time.Duration(rand.Float64() * s.o.jitter * float64(wait))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func sameTarget(a, b Target) bool {
	return a.URL == b.URL && a.Weight == b.Weight && a.Backup == b.Backup
}
