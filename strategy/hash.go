package strategy

import (
	"net/http"
	"sync"
	"sync/atomic"
)

// ConsistentHash is nginx's hash $key consistent: Karger et al.'s consistent
// hashing (STOC 1997) on a ketama ring (libketama, Cache::Memcached::Fast)
// with 160 points per unit of configured weight, built and walked as nginx's
// ngx_http_upstream_update_chash and ngx_http_upstream_get_chash_peer
// (ngx_http_upstream_hash_module.c) do. A request goes to the member owning
// the first point at or after the CRC-32 of its key, wrapping round the ring;
// if that member is not usable, or the request has already tried it, the next
// member along the ring takes it. Taking a member down or out moves only the
// keys it had, and adding one moves only the keys it takes. Unlike nginx,
// which gives up after 20 points and falls back to round robin, the walk goes
// on round the whole ring; a run of one member's points costs one step.
//
// The ring is built over Set.All, so health changes do not move keys between
// the members that stay up. Each member's points derive, exactly as nginx
// derives them from a server directive, from its Key: the host and optional
// port of the Key ("10.0.0.1:8080"; "backend.example.com" has no port, and
// neither has "10.0.0.1" given as "http://10.0.0.1:80", whose Key drops the
// default port), followed by the URL's path when it is neither "" nor "/", so that
// two members at one address with different base paths do not collide. The
// scheme is not part of it: members whose strings are equal (http:// and
// https:// of one address) share their points, and the first of them in
// Set.All takes their keys while it is usable. Independent balancers over the same URLs and
// weights therefore build the same ring and agree on every key. The ring
// uses Endpoint.Weight, the configured weight: Set.Weights (slow start) does
// not move points.
//
// The key function extracts the key from a request, for example a header, a
// cookie or the client address. When it is nil or returns "", or the Set has
// fewer than two members, the ConsistentHash falls back to round robin over
// the usable members, as nginx does. A panic in the key function is not
// recovered.
//
// The ring is rebuilt only when the members of Set.All or their configured
// weights change; otherwise new pickers share the previous one. Pick hashes
// the key and searches the ring without allocating or locking. A
// ConsistentHash and its pickers are safe for concurrent use.
type ConsistentHash struct {
	key   func(*http.Request) string
	next  atomic.Uint64 // round-robin fallback cursor, shared by all pickers
	retry atomic.Uint64 // its cursor for retries (see RoundRobin)

	mu      sync.Mutex // guards ring, members and weights; Picker only
	ring    *ring      // the last ring built
	members []Endpoint // the All it was built from
	weights []int      // their configured weights
}

var _ Strategy = (*ConsistentHash)(nil)

// NewConsistentHash returns a consistent-hash strategy that hashes the key
// that key returns for each request.
func NewConsistentHash(key func(*http.Request) string) *ConsistentHash {
	return &ConsistentHash{key: key}
}

// Picker returns a picker over set. It builds a new ring only if set.All or
// the configured weights of its members differ from the previous Set's.
func (c *ConsistentHash) Picker(set *Set) Picker { return c.newPicker(set) }

// newPicker is Picker with the concrete type, for [BoundedHash], which
// walks the same ring.
func (c *ConsistentHash) newPicker(set *Set) *hashPicker {
	p := &hashPicker{
		key: c.key,
		rr:  rrPicker{next: &c.next, retry: &c.retry, all: set.All, usable: set.Usable},
	}
	if c.key == nil || len(set.All) < 2 {
		return p
	}
	p.ring = c.ringFor(set.All)
	p.ok = make([]bool, len(set.All))
	for _, i := range set.Usable {
		p.ok[i] = true
	}
	return p
}

// ringFor returns the ring over all, reusing the last one if it fits.
func (c *ConsistentHash) ringFor(all []Endpoint) *ring {
	c.mu.Lock()
	defer c.mu.Unlock()
	same := c.ring != nil && len(all) == len(c.members)
	for i := 0; same && i < len(all); i++ {
		same = all[i] == c.members[i] && all[i].Weight() == c.weights[i]
	}
	if same {
		return c.ring
	}
	c.members = append(c.members[:0], all...)
	c.weights = c.weights[:0]
	for _, e := range all {
		c.weights = append(c.weights, e.Weight())
	}
	c.ring = newRing(all)
	return c.ring
}

// hashPicker is an immutable view of one Set and its ring.
type hashPicker struct {
	key  func(*http.Request) string
	rr   rrPicker // the fallback, over Usable
	ring *ring    // nil: round robin only
	ok   []bool   // ok[i] reports whether All[i] is usable
}

// Pick implements [Picker]. It never blocks or allocates.
func (p *hashPicker) Pick(r *http.Request, tried *Tried) int {
	if p.ring != nil {
		if k := p.key(r); k != "" {
			if m := p.ring.lookup(keyCRC(k), p.ok, p.rr.all, tried); m >= 0 {
				return m
			}
			// Only a member without points (all lost to hash
			// collisions) can be left; round robin finds it.
		}
	}
	return p.rr.Pick(r, tried)
}
