package lb

import (
	"context"
	"fmt"
)

// This file holds the pool's runtime controls: what an operator or a
// discovery source does to a pool that is serving. Each one is made under
// the pool's lock and published as a new snapshot; none of them touches
// requests in flight.

// lookupLocked finds the backend named by rawURL. p.mu must be held.
func (p *Pool) lookupLocked(rawURL string) (*Backend, error) {
	key := rawURL
	if _, k, err := parseBackendURL(rawURL); err == nil {
		key = k
	}
	b, ok := p.byKey[key]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknownBackend, redactRaw(rawURL))
	}
	return b, nil
}

// SetWeight changes the weight of the backend with the given URL. The
// strategies keep their state: smooth weighted round robin goes on from its
// current weights, least connections keeps its in-flight counts.
func (p *Pool) SetWeight(rawURL string, w int) error {
	if w < 1 || w > MaxWeight {
		return fmt.Errorf("%w: weight %d for %s: must be between 1 and %d", ErrInvalidBackend, w, redactRaw(rawURL), MaxWeight)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	b, err := p.lookupLocked(rawURL)
	if err != nil {
		return err
	}
	if b.Weight() == w {
		return nil
	}
	b.weight.Store(int64(w))
	p.publishLocked()
	return nil
}

// Drain stops new requests to the backend with the given URL and waits
// until the requests in flight on it (streams and upgraded connections
// included) have finished, or until ctx ends, whichever comes first; it
// returns ctx's error in the second case. The backend stays in the pool,
// draining, until it is removed or [Pool.SetMaintenance] (false) puts it
// back in service. Drain then Remove takes a backend out without cutting a
// request.
func (p *Pool) Drain(ctx context.Context, rawURL string) error {
	p.mu.Lock()
	b, err := p.lookupLocked(rawURL)
	if err != nil {
		p.mu.Unlock()
		return err
	}
	if !b.draining {
		b.draining = true
		b.reason = "drained by the operator"
		p.publishLocked()
		// After the publish, so that an attempt that backs off finds a
		// snapshot without b (see Backend.noNew).
		b.noNew.Store(true)
	}
	p.mu.Unlock()

	// noNew is set before waitIdleChan reads the in-flight count, and an
	// attempt checks noNew after counting itself: one of the two sees the
	// other, so no request can slip in after Drain returns.
	select {
	case <-b.waitIdleChan():
	case <-ctx.Done():
		return ctx.Err()
	}
	p.mu.RLock()
	for _, bal := range p.balancers {
		bal.emit(Event{Kind: EventDrained, Time: bal.now(), Backend: b})
	}
	p.mu.RUnlock()
	return nil
}

// SetMaintenance takes the backend with the given URL out of rotation by
// hand (on) or puts it back in service (off, which also ends a drain).
// While in maintenance, health checks keep running but do not bring it
// back. Requests in flight are not cut.
func (p *Pool) SetMaintenance(rawURL string, on bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, err := p.lookupLocked(rawURL)
	if err != nil {
		return err
	}
	if on == b.maintenance && (on || !b.draining) {
		return nil
	}
	b.maintenance = on
	if on {
		b.reason = "maintenance"
	} else {
		b.draining = false
		b.reason = "back in service"
	}
	p.publishLocked()
	b.noNew.Store(b.maintenance || b.draining)
	return nil
}

// Update makes the pool hold exactly backends, in that order, in one step:
// what a service-discovery source needs. A backend whose URL is already in
// the pool keeps its Backend, with its health state, counters and checker,
// and takes the new one's weight and backup flag; backends not listed are
// removed (their requests in flight finish); new ones are added. Nothing
// changes if the list is invalid (nil entries, duplicate URLs, a backend of
// another pool).
func (p *Pool) Update(backends ...*Backend) error {
	seen := make(map[string]bool, len(backends))
	for _, b := range backends {
		if b == nil || b.url == nil {
			return fmt.Errorf("%w: nil backend", ErrInvalidBackend)
		}
		if seen[b.key] {
			return fmt.Errorf("%w: %s", ErrDuplicateBackend, b.key)
		}
		seen[b.key] = true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range backends {
		if owner := b.pool.Load(); owner != nil && owner != p {
			return fmt.Errorf("%w: %s", ErrBackendInUse, b.key)
		}
		if old, ok := p.byKey[b.key]; ok && old != b && b.pool.Load() == p {
			return fmt.Errorf("%w: %s", ErrBackendInUse, b.key)
		}
	}
	next := make([]*Backend, 0, len(backends))
	var added []*Backend
	for _, b := range backends {
		if old, ok := p.byKey[b.key]; ok {
			old.weight.Store(b.weight.Load())
			old.backup.Store(b.backup.Load())
			next = append(next, old)
			continue
		}
		b.pool.Store(p)
		b.resetForPool()
		next = append(next, b)
		added = append(added, b)
	}
	var removed []*Backend
	for _, old := range p.backends {
		if !seen[old.key] {
			removed = append(removed, old)
		}
	}
	for _, old := range removed {
		delete(p.byKey, old.key)
		old.pool.Store(nil)
	}
	if p.byKey == nil {
		p.byKey = make(map[string]*Backend)
	}
	for _, b := range added {
		p.byKey[b.key] = b
	}
	p.backends = next
	for _, bal := range p.balancers {
		for _, old := range removed {
			bal.removedLocked(old)
		}
		for _, b := range added {
			bal.addedLocked(b)
		}
	}
	p.publishLocked()
	for _, old := range removed {
		old.noNew.Store(true)
	}
	return nil
}
