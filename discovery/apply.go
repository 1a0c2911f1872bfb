package discovery

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/tinylb/lb"
)

// member is a target turned into a backend for the pool.
type member struct {
	backend  *lb.Backend
	draining bool
}

// backends turns set into new lb.Backends, in order, skipping (and
// reporting) the targets NewBackend refuses and the repeats of a URL.
// A draining target that is not in the pool is left out too: it has no
// request in flight to finish, so adding it would only send it new ones.
func (w *Watcher) backends(set []Target) []member {
	out := make([]member, 0, len(set))
	seen := make(map[string]int, len(set))
	for i, t := range set {
		b, err := newBackend(t)
		if err == nil {
			if j, dup := seen[b.Key()]; dup {
				err = fmt.Errorf("%w: target %d: %w: %s is target %d too", ErrInvalidTarget, i, lb.ErrDuplicateBackend, b.Key(), j)
			}
		}
		if err != nil {
			w.skipped(t, err)
			continue
		}
		seen[b.Key()] = i
		if _, in := w.pool.Get(b.Key()); t.Draining && !in {
			continue
		}
		out = append(out, member{backend: b, draining: t.Draining})
	}
	return out
}

// newBackend returns the lb.Backend of t.
func newBackend(t Target) (*lb.Backend, error) {
	w := t.Weight
	if w == 0 {
		w = 1
	}
	opts := []lb.BackendOption{lb.WithWeight(w)}
	if t.Backup {
		opts = append(opts, lb.AsBackup())
	}
	b, err := lb.NewBackend(t.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidTarget, err)
	}
	return b, nil
}

func (w *Watcher) skipped(t Target, err error) {
	w.mu.Lock()
	w.st.Skipped++
	w.mu.Unlock()
	w.log.Warn("discovery: target skipped", "error", err) // err quotes the URL without credentials
	w.emit(Event{Kind: EventTargetSkipped, Target: t, Err: err})
}

// apply makes the pool hold set.
func (w *Watcher) apply(set []Target) {
	members := w.backends(set)
	if len(members) == 0 && !w.o.allowEmpty {
		err := fmt.Errorf("%w: %d targets, none usable; the pool keeps its %d backends", ErrEmptySet, len(set), w.pool.Len())
		w.ignored(err)
		return
	}
	before := make(map[string]bool)
	for _, b := range w.pool.Backends() {
		before[b.Key()] = true
	}
	list := make([]*lb.Backend, len(members))
	for i, m := range members {
		list[i] = m.backend
	}
	if err := w.pool.Update(list...); err != nil {
		w.ignored(err) // a backend of another pool: nothing changed
		return
	}
	w.syncDrains(members)

	var added, removed []string
	after := make(map[string]bool, len(list))
	for _, b := range list {
		after[b.Key()] = true
		if !before[b.Key()] {
			added = append(added, b.Key())
		}
	}
	for _, k := range slices.Sorted(maps.Keys(before)) {
		if !after[k] {
			removed = append(removed, k)
		}
	}
	now := time.Now()
	w.mu.Lock()
	w.st.Updates++
	w.st.LastUpdate = now
	first := !w.applied
	w.applied = true
	w.mu.Unlock()
	if first {
		close(w.ready)
	}
	if len(added)+len(removed) > 0 {
		w.log.Info("discovery: pool updated", "backends", len(list), "added", added, "removed", removed)
	} else {
		w.log.Debug("discovery: pool updated, no member changed", "backends", len(list))
	}
	w.emit(Event{Kind: EventApplied, Time: now, Size: len(list), Added: added, Removed: removed})
}

func (w *Watcher) ignored(err error) {
	w.mu.Lock()
	w.st.Ignored++
	w.mu.Unlock()
	w.log.Warn("discovery: set ignored", "error", err)
	w.emit(Event{Kind: EventIgnored, Err: err})
}

// drainJob is a drain the watcher runs: Drain blocks until the backend
// is idle.
type drainJob struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when the goroutine has returned
}

// syncDrains starts a drain for each member that became draining, ends
// the drain of each that is ready again ([lb.Pool.SetMaintenance] off) and
// forgets those that left the pool. Only the applier calls it.
func (w *Watcher) syncDrains(members []member) {
	draining := make(map[string]bool)
	for _, m := range members {
		k := m.backend.Key()
		w.mu.Lock()
		job, ours := w.drains[k]
		w.mu.Unlock()
		switch {
		case m.draining && !ours:
			w.startDrain(k)
		case !m.draining && ours:
			// Wait for the goroutine: Drain marks the backend draining
			// before it waits, so a Drain still starting would undo the
			// SetMaintenance below.
			job.cancel()
			<-job.done
			if err := w.pool.SetMaintenance(k, false); err != nil && !errors.Is(err, lb.ErrUnknownBackend) {
				w.log.Warn("discovery: ending a drain", "url", k, "error", err)
			}
			w.mu.Lock()
			delete(w.drains, k)
			w.mu.Unlock()
		}
		if m.draining {
			draining[k] = true
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, job := range w.drains {
		if !draining[k] { // removed from the pool by the update
			job.cancel()
			delete(w.drains, k)
		}
	}
	w.st.Draining = len(w.drains)
}

// startDrain drains the backend with key k in a goroutine of the
// watcher: lb.Pool.Drain blocks until the backend is idle. The goroutine
// ends then, or when the drain is called off (the target is ready again or
// gone, or the watcher closes); the backend stays draining until the
// target comes back ready or leaves.
func (w *Watcher) startDrain(k string) {
	ctx, cancel := context.WithCancel(w.ctx)
	job := &drainJob{cancel: cancel, done: make(chan struct{})}
	w.mu.Lock()
	w.drains[k] = job
	w.mu.Unlock()
	w.wg.Go(func() {
		defer close(job.done)
		defer cancel()
		err := w.pool.Drain(ctx, k)
		switch {
		case err == nil:
			w.log.Info("discovery: backend drained", "url", k)
		case ctx.Err() == nil:
			w.log.Warn("discovery: drain", "url", k, "error", err)
		}
	})
}

// stopDrains calls off every drain, at Close.
func (w *Watcher) stopDrains() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, job := range w.drains {
		job.cancel()
	}
}

func cloneTargets(set []Target) []Target {
	out := make([]Target, len(set))
	copy(out, set) // Metadata maps are shared: a source hands over its set
	return out
}
