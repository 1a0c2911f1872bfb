package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/tinylb/lb/discovery"
)

// loop is Run's state between two pushes: what was pushed last, so that
// an event that leaves the set as it was (a slice's labels or annotations
// changed, the same endpoint moved to another slice) pushes nothing.
type loop struct {
	src   *source
	store cache.Store
	push  func([]discovery.Target, error)

	pushed  bool
	lastSet []discovery.Target
	lastErr error
}

// waitSync waits for the informer's first complete list (synced closes).
// Meanwhile it pushes each list or watch failure, and ErrNotSynced once
// when the sync timeout passes. It reports false if ctx ended first.
func (l *loop) waitSync(ctx context.Context, synced <-chan struct{}, changed <-chan struct{}, failures *lastError) bool {
	s := l.src
	timer := time.NewTimer(s.opts.syncTimeout)
	defer timer.Stop()
	var last error
	for {
		select {
		case <-ctx.Done():
			return false
		case <-synced:
			return true
		case <-changed:
			// Before the sync the store is partial: only failures matter.
			if err := failures.take(); err != nil {
				last = err
				s.opts.logger.Warn("kubernetes: listing EndpointSlices failed", "namespace", s.namespace, "service", s.service, "err", err)
				l.push(nil, fmt.Errorf("%w: %s/%s: %w", ErrList, s.namespace, s.service, err))
			}
		case <-timer.C:
			err := fmt.Errorf("%w: %s/%s: no complete list after %v", ErrNotSynced, s.namespace, s.service, s.opts.syncTimeout)
			if last != nil {
				err = fmt.Errorf("%w (last failure: %w)", err, last)
			}
			l.push(nil, err)
		}
	}
}

// publish computes the set from the informer's store and pushes it when it
// differs from the last push, or always when force is set.
func (l *loop) publish(force bool) {
	objs := l.store.List()
	list := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		if sl, ok := o.(*discoveryv1.EndpointSlice); ok {
			list = append(list, sl)
		}
	}
	set, err := l.src.targets(list)
	if !force && l.pushed && sameOutcome(set, err, l.lastSet, l.lastErr) {
		return
	}
	l.pushed, l.lastSet, l.lastErr = true, set, err
	if err != nil {
		l.push(nil, err)
		return
	}
	l.push(set, nil)
}

// sameOutcome reports whether a computed set (or error) is the one pushed
// last. Errors compare by message: a new error value that says the same
// thing is no news.
func sameOutcome(set []discovery.Target, err error, lastSet []discovery.Target, lastErr error) bool {
	if err != nil || lastErr != nil {
		return err != nil && lastErr != nil && (errors.Is(err, lastErr) || err.Error() == lastErr.Error())
	}
	return slices.EqualFunc(set, lastSet, sameTarget)
}

func sameTarget(a, b discovery.Target) bool {
	return a.URL == b.URL && a.Weight == b.Weight && a.Backup == b.Backup && a.Draining == b.Draining &&
		a.Zone == b.Zone && maps.Equal(a.Metadata, b.Metadata)
}
