package lb

import (
	"fmt"
	"slices"
	"sync"
)

// Pool is the set of backends a [Balancer] spreads requests over. The zero
// value is an empty pool ready to use. Membership may change at any time,
// under traffic: every change is made under the pool's lock and publishes a
// new immutable snapshot to the balancers using the pool, so requests never
// wait for it.
//
// A Pool is meant to serve one Balancer. Balancers that share a pool share
// its backends' health state and in-flight counts.
type Pool struct {
	mu        sync.RWMutex // guards backends, byKey, balancers and every member's health fields
	backends  []*Backend   // in the order they were added
	byKey     map[string]*Backend
	balancers []*Balancer // balancers using the pool, told of every change
}

// NewPool returns a pool holding backends, in that order. It fails if a
// backend is nil, appears twice, shares its URL with another (compared by
// [Backend.Key], so "http://x" and "http://x:80" are one URL), or already
// belongs to another pool.
func NewPool(backends ...*Backend) (*Pool, error) {
	p := &Pool{}
	for _, b := range backends {
		if err := p.check(b); err != nil {
			return nil, err
		}
		if p.byKey == nil {
			p.byKey = make(map[string]*Backend)
		}
		p.byKey[b.key] = b
		p.backends = append(p.backends, b)
	}
	for _, b := range backends {
		if !b.pool.CompareAndSwap(nil, p) {
			for _, done := range backends {
				if done == b {
					break
				}
				done.pool.Store(nil)
			}
			return nil, fmt.Errorf("%w: %s", ErrBackendInUse, b.key)
		}
	}
	for _, b := range backends {
		b.resetForPool()
	}
	return p, nil
}

// check validates b for membership. p.mu must be held or p unpublished.
func (p *Pool) check(b *Backend) error {
	if b == nil {
		return fmt.Errorf("%w: nil backend", ErrInvalidBackend)
	}
	if b.url == nil {
		return fmt.Errorf("%w: backend not made by NewBackend", ErrInvalidBackend)
	}
	if _, dup := p.byKey[b.key]; dup {
		return fmt.Errorf("%w: %s", ErrDuplicateBackend, b.key)
	}
	return nil
}

// Add puts b at the end of the pool. Balancers using the pool start sending
// it requests at once (after its first health check, if they check health)
// and start its health checker. It fails like [NewPool].
func (p *Pool) Add(b *Backend) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.check(b); err != nil {
		return err
	}
	if !b.pool.CompareAndSwap(nil, p) {
		return fmt.Errorf("%w: %s", ErrBackendInUse, b.key)
	}
	b.resetForPool()
	if p.byKey == nil {
		p.byKey = make(map[string]*Backend)
	}
	p.byKey[b.key] = b
	p.backends = append(p.backends, b)
	for _, bal := range p.balancers {
		bal.addedLocked(b)
	}
	p.publishLocked()
	return nil
}

// Remove takes the backend with the given URL out of the pool. It gets no
// new request once Remove returns; requests already in flight on it run to
// completion. The error wraps [ErrUnknownBackend] if no backend has that
// URL. Like every look-up by URL (Get, Drain, SetWeight, SetMaintenance),
// it normalizes rawURL as [Backend.Key] does, so that any spelling of the
// URL finds the backend.
func (p *Pool) Remove(rawURL string) error {
	key := rawURL
	if _, k, err := parseBackendURL(rawURL); err == nil {
		key = k
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	b, ok := p.byKey[key]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownBackend, redactRaw(rawURL))
	}
	delete(p.byKey, key)
	p.backends = slices.DeleteFunc(p.backends, func(x *Backend) bool { return x == b })
	for _, bal := range p.balancers {
		bal.removedLocked(b)
	}
	b.pool.Store(nil)
	p.publishLocked()
	b.noNew.Store(true) // after the publish: see Backend.noNew
	return nil
}

// Backends returns the pool's backends in order. The slice is the caller's.
func (p *Pool) Backends() []*Backend {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return slices.Clone(p.backends)
}

// Get returns the backend with the given URL.
func (p *Pool) Get(rawURL string) (*Backend, bool) {
	key := rawURL
	if _, k, err := parseBackendURL(rawURL); err == nil {
		key = k
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	b, ok := p.byKey[key]
	return b, ok
}

// Len returns the number of backends in the pool.
func (p *Pool) Len() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.backends)
}

// publishLocked has every balancer rebuild its snapshot. p.mu must be held
// for writing.
func (p *Pool) publishLocked() {
	for _, bal := range p.balancers {
		bal.publishLocked()
	}
}

// attachLocked registers bal for change notices. p.mu must be held for
// writing.
func (p *Pool) attachLocked(bal *Balancer) {
	p.balancers = append(p.balancers, bal)
}

// detachLocked undoes attachLocked. p.mu must be held for writing.
func (p *Pool) detachLocked(bal *Balancer) {
	p.balancers = slices.DeleteFunc(p.balancers, func(x *Balancer) bool { return x == bal })
}
