package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/tinylb/lb/discovery"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// run is the state of one call to [Source.Run]; only its goroutine
// touches it.
type run struct {
	src  *Source
	push func([]discovery.Target, error)
	conn chan bool // the connection's latest state, from watchConn

	entries map[string]entry // the good keys under the prefix
	rev     int64            // the revision entries reflect
	failed  bool             // an error was pushed after the last set
	backoff time.Duration    // the last wait after a failure; 0 after a read or events
}

// errWatchClosed is what a watch channel closed without a final response
// means: the client was closed, or the watch's context ended.
var errWatchClosed = errors.New("watch channel closed")

// loop alternates reading the whole prefix and watching it. A watch that
// fails resumes from r.rev + 1 after a backoff; one that fails because
// that revision was compacted reads the prefix again first.
func (r *run) loop(ctx context.Context) error {
	read := true
	for {
		if err := r.closed(ctx); err != nil {
			return ignoreCanceled(ctx, err)
		}
		if read {
			if err := r.read(ctx); err != nil {
				if err := r.closed(ctx); err != nil {
					return ignoreCanceled(ctx, err)
				}
				r.fail(fmt.Errorf("etcd: read prefix %q: %w", r.src.prefix, err))
				if err := r.wait(ctx); err != nil {
					return nil
				}
				continue
			}
			read = false
		}
		err := r.watch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, rpctypes.ErrCompacted) {
			// Not a failure: the events since r.rev are gone, but a
			// fresh read gives the set they led to.
			r.src.opts.logger.Info("etcd: history compacted past the watch, reading the prefix again",
				slog.String("prefix", r.src.prefix), slog.Int64("revision", r.rev))
			read = true
			continue
		}
		if err := r.closed(ctx); err != nil {
			return ignoreCanceled(ctx, err)
		}
		r.fail(fmt.Errorf("etcd: watch prefix %q from revision %d: %w", r.src.prefix, r.rev+1, err))
		if err := r.wait(ctx); err != nil {
			return nil
		}
	}
}

// closed returns ctx's error, or ErrClientClosed once the client is.
func (r *run) closed(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.src.client.Ctx().Err() != nil {
		return ErrClientClosed
	}
	return nil
}

// ignoreCanceled maps the end of ctx, which is how Run is asked to stop,
// to nil.
func ignoreCanceled(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// read replaces the entries with the keys under the prefix and pushes
// them.
func (r *run) read(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, r.src.opts.requestTimeout)
	defer cancel()
	resp, err := r.src.client.Get(rctx, r.src.prefix, clientv3.WithPrefix())
	if err != nil {
		return err
	}
	clear(r.entries)
	for _, kv := range resp.Kvs {
		r.put(kv)
	}
	r.rev = resp.Header.Revision
	r.backoff = 0
	r.pushSet()
	return nil
}

// watch follows the prefix from r.rev + 1 until the watch fails or ctx
// ends, pushing the set after each batch of events, and the connection's
// news as they come (see connChanged). The watch is opened on a goroutine
// of its own because clientv3's Watch blocks until its gRPC stream is up,
// which is never while etcd is unreachable, and an outage must still be
// pushed then.
func (r *run) watch(ctx context.Context) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel, which ends a Watch call still waiting
	defer cancel()
	opened := make(chan clientv3.WatchChan, 1)
	wg.Go(func() {
		opened <- r.src.client.Watch(wctx, r.src.prefix,
			clientv3.WithPrefix(), clientv3.WithRev(r.rev+1), clientv3.WithCreatedNotify())
	})
	var events clientv3.WatchChan // nil, so never ready, until opened
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case events = <-opened:
		case up := <-r.conn:
			r.connChanged(up)
		case resp, ok := <-events:
			if !ok {
				return errWatchClosed
			}
			if err := resp.Err(); err != nil {
				return err
			}
			if resp.Created {
				if r.failed {
					r.pushSet()
				}
				continue
			}
			if len(resp.Events) == 0 {
				continue // a progress notification
			}
			for _, ev := range resp.Events {
				r.apply(ev)
			}
			r.rev = resp.Events[len(resp.Events)-1].Kv.ModRevision
			r.backoff = 0 // events flow: the watch works again
			r.pushSet()
		}
	}
}

// connChanged pushes ErrDisconnected when the connection goes down, and
// the set again when it is back after an error, so that the watcher stops
// reporting one. The set pushed then is the last one known; clientv3's
// watcher resumes from the revision after it by itself, and what changed
// meanwhile follows as events (or, if that history was compacted, as an
// ErrCompacted that makes loop read the prefix again).
func (r *run) connChanged(up bool) {
	switch {
	case !up && !r.failed:
		r.fail(fmt.Errorf("%w: watching prefix %q from revision %d", ErrDisconnected, r.src.prefix, r.rev+1))
	case up && r.failed:
		r.src.opts.logger.Info("etcd: connected again", slog.String("prefix", r.src.prefix), slog.Int64("revision", r.rev))
		r.pushSet()
	}
}

// apply records one event.
func (r *run) apply(ev *clientv3.Event) {
	if ev.Type == mvccpb.DELETE {
		delete(r.entries, string(ev.Kv.Key))
		return
	}
	r.put(ev.Kv)
}

// put records a key's value, or skips the key (dropping what it held)
// and logs why.
func (r *run) put(kv *mvccpb.KeyValue) {
	key := string(kv.Key)
	e, err := parseValue(kv.Value)
	if err != nil {
		delete(r.entries, key)
		r.src.opts.logger.Warn("etcd: skipping key", slog.String("key", key),
			slog.Int64("revision", kv.ModRevision), slog.Any("error", err))
		return
	}
	for other, o := range r.entries {
		if other != key && o.key == e.key {
			r.src.opts.logger.Warn("etcd: key names the same backend as another; the first in key order is used",
				slog.String("key", key), slog.String("other", other), slog.String("backend", e.key))
			break
		}
	}
	r.entries[key] = e
}

// pushSet pushes the entries as targets, in key order; of keys naming the
// same backend only the first is kept, as a pool cannot hold one backend
// twice.
func (r *run) pushSet() {
	keys := make([]string, 0, len(r.entries))
	for k := range r.entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	set := make([]discovery.Target, 0, len(keys))
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		e := r.entries[k]
		if seen[e.key] {
			continue
		}
		seen[e.key] = true
		set = append(set, e.target)
	}
	r.failed = false
	r.push(set, nil)
}

// fail pushes err.
func (r *run) fail(err error) {
	r.failed = true
	r.src.opts.logger.Warn("etcd: source failing", slog.String("prefix", r.src.prefix), slog.Any("error", err))
	r.push(nil, err)
}

// wait sleeps for the next backoff, or until ctx ends (then it returns its
// error).
func (r *run) wait(ctx context.Context) error {
	o := r.src.opts
	switch {
	case r.backoff == 0:
		r.backoff = o.minBackoff
	case r.backoff < o.maxBackoff:
		r.backoff = min(2*r.backoff, o.maxBackoff)
	}
	t := time.NewTimer(r.backoff)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
