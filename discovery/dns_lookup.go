package discovery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tinylb/lb"
)

// lookupTimeout bounds one lookup of a name, all the resolver's attempts
// included.
const lookupTimeout = 10 * time.Second

// lookup returns the current set and the smallest TTL of the answers it
// came from (-1 if none was seen).
func (s *DNSSource) lookup(ctx context.Context) ([]Target, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	ttl := newTTLs()
	if s.kind == "dns" {
		addrs, err := s.addrs(ctx, s.qname(), ttl)
		if err != nil {
			return nil, 0, err
		}
		set := make([]Target, len(addrs))
		for i, a := range addrs {
			set[i] = Target{URL: s.url(a, s.port), Weight: 1}
		}
		return set, ttl.min(), nil
	}
	set, err := s.srv(ctx, ttl)
	return set, ttl.min(), err
}

// addrs looks up the addresses of name, sorted. A name that has no
// address record is no error: its set is empty.
func (s *DNSSource) addrs(ctx context.Context, name string, ttl *ttls) ([]netip.Addr, error) {
	rec := ttl.lookup()
	addrs, err := s.resolver(rec).LookupNetIP(ctx, "ip", name)
	if err != nil {
		if err := s.classify(name, "A/AAAA", rec, err); err != nil {
			return nil, err
		}
		return nil, nil
	}
	for i, a := range addrs {
		addrs[i] = a.Unmap()
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	return slices.Compact(addrs), nil
}

// srv looks up the SRV records and the addresses of their targets.
func (s *DNSSource) srv(ctx context.Context, ttl *ttls) ([]Target, error) {
	rec := ttl.lookup()
	_, records, err := s.resolver(rec).LookupSRV(ctx, "", "", s.qname())
	if err != nil {
		if err := s.classify(s.qname(), "SRV", rec, err); err != nil {
			return nil, err
		}
		return nil, nil
	}
	if len(records) == 0 {
		return nil, nil
	}
	// Go's resolver orders the records by priority and, within one, at
	// random by weight (RFC 2782's selection); a set is compared whole, so
	// sort them stably.
	slices.SortFunc(records, func(a, b *net.SRV) int {
		return cmp.Or(cmp.Compare(a.Priority, b.Priority), strings.Compare(a.Target, b.Target), cmp.Compare(a.Port, b.Port))
	})
	primary := records[0].Priority
	addrsOf := make(map[string][]netip.Addr)
	var set []Target
	seen := make(map[string]bool)
	for _, r := range records {
		addrs, done := addrsOf[r.Target]
		if !done {
			if addrs, err = s.addrs(ctx, r.Target, ttl); err != nil {
				return nil, fmt.Errorf("SRV target of %s: %w", s.qname(), err)
			}
			addrsOf[r.Target] = addrs
		}
		w := min(max(int(r.Weight), 1), lb.MaxWeight)
		for _, a := range addrs {
			u := s.url(a, int(r.Port))
			if seen[u] {
				continue // the lowest priority of a repeated address wins
			}
			seen[u] = true
			set = append(set, Target{
				URL: u, Weight: w, Backup: r.Priority != primary,
				Metadata: map[string]string{
					"srv_target":   r.Target,
					"srv_priority": strconv.Itoa(int(r.Priority)),
					"srv_weight":   strconv.Itoa(int(r.Weight)),
				},
			})
		}
	}
	return set, nil
}

func (s *DNSSource) url(a netip.Addr, port int) string {
	return s.o.scheme + "://" + netip.AddrPortFrom(a, uint16(port)).String()
}

// classify turns a failed lookup of name into the error to report, or nil
// when the server said the name exists and has no such record (an empty
// set).
func (s *DNSSource) classify(name, what string, rec *ttlRecorder, err error) error {
	var de *net.DNSError
	nx, answered := rec.outcome()
	switch {
	case nx:
		return fmt.Errorf("%w: %s %s: %w", ErrNotFound, what, name, err)
	case errors.As(err, &de) && de.IsNotFound && answered:
		return nil
	}
	return fmt.Errorf("%w: %s %s: %w", ErrLookup, what, name, err)
}

// resolver returns a resolver whose DNS traffic rec reads.
func (s *DNSSource) resolver(rec *ttlRecorder) *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if s.o.server != "" {
				addr = s.o.server
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return rec.wrap(c), nil
		},
	}
}
