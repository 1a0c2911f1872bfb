package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tinylb/lb"
)

// Watcher keeps a pool in step with a [Source]: it runs the source in a
// goroutine of its own and applies each set the source reports with
// [lb.Pool.Update]. Create it with [Watch]; [Watcher.Close] stops it.
type Watcher struct {
	src  Source
	pool *lb.Pool
	o    options
	log  *slog.Logger

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the source, the applier and the drains
	events *eventQueue

	wake  chan struct{} // a set is pending; buffered, one slot
	ready chan struct{} // closed when the first set is applied
	done  chan struct{} // closed when the source's Run has returned

	mu      sync.Mutex // guards what follows
	pending []Target   // the latest set not yet applied
	hasSet  bool       // pending holds a set
	st      Stats
	runErr  error                // what Run returned
	drains  map[string]*drainJob // the backends the watcher drains, by key
	applied bool                 // ready is closed
}

// Watch starts a watcher that keeps pool in step with src until ctx ends
// or [Watcher.Close] is called. Members that stay in the source's sets keep
// their lb.Backend, and with it their health state, counters and health
// checker; a balancer over pool health-checks the members added as it
// does any other. The watcher never empties the pool on an error: a
// source error, or a set with no usable target, keeps the last good set
// (see [WithAllowEmpty]). Closing the watcher leaves the pool as it is.
//
// The watcher owns the pool's membership: a backend added by other means
// is gone after the next set. Weights set by hand are replaced by the
// source's at the next set too; maintenance set by hand is kept.
func Watch(ctx context.Context, src Source, pool *lb.Pool, opts ...Option) *Watcher {
	w := &Watcher{
		src:    src,
		pool:   pool,
		o:      options{debounce: DefaultDebounce},
		wake:   make(chan struct{}, 1),
		ready:  make(chan struct{}),
		done:   make(chan struct{}),
		drains: make(map[string]*drainJob),
	}
	for _, o := range opts {
		if o != nil {
			o.apply(&w.o)
		}
	}
	w.log = w.o.logger
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	w.ctx, w.cancel = context.WithCancel(ctx)
	if w.o.events != nil {
		w.events = newEventQueue(w.ctx, w.o.events)
	}
	if src == nil || pool == nil {
		// Bad input gets an error, not a panic: the watcher stops at once
		// and says why.
		close(w.done)
		w.stopped(errors.New("discovery: Watch needs a Source and a *lb.Pool"))
		return w
	}
	w.wg.Go(w.runSource)
	w.wg.Go(w.applyLoop)
	return w
}

// runSource runs the source until the watcher's context ends.
func (w *Watcher) runSource() {
	defer close(w.done)
	err := w.src.Run(w.ctx, w.push)
	if w.ctx.Err() != nil {
		return // closed: Run's context error is no news
	}
	w.stopped(err)
}

// stopped records that the source stopped before the watcher was closed.
func (w *Watcher) stopped(err error) {
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrSourceStopped, err)
	} else {
		err = ErrSourceStopped
	}
	w.mu.Lock()
	w.runErr = err
	w.recordErrorLocked(err)
	w.mu.Unlock()
	w.log.Error("discovery source stopped; the pool keeps its last set", "error", err)
	w.emit(Event{Kind: EventSourceStopped, Err: err})
}

// push is the source's callback: it never blocks.
func (w *Watcher) push(set []Target, err error) {
	if w.ctx.Err() != nil {
		return
	}
	if err != nil {
		w.mu.Lock()
		w.recordErrorLocked(err)
		w.mu.Unlock()
		w.log.Warn("discovery source error; the pool keeps its last set", "error", err)
		w.emit(Event{Kind: EventSourceError, Err: err})
		return
	}
	w.mu.Lock()
	w.pending = cloneTargets(set)
	w.hasSet = true
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// applyLoop applies the pending set: the first at once, the later ones at
// most once per debounce window, the latest of each window.
func (w *Watcher) applyLoop() {
	first := true
	for {
		select {
		case <-w.ctx.Done():
			w.stopDrains()
			return
		case <-w.wake:
		}
		if !first && w.o.debounce > 0 {
			t := time.NewTimer(w.o.debounce)
			select {
			case <-w.ctx.Done():
				t.Stop()
				w.stopDrains()
				return
			case <-t.C:
			}
		}
		w.mu.Lock()
		set, ok := w.pending, w.hasSet
		w.pending, w.hasSet = nil, false
		w.mu.Unlock()
		if ok {
			w.apply(set)
			first = false
		}
	}
}

// recordErrorLocked counts err as the last error. w.mu must be held.
func (w *Watcher) recordErrorLocked(err error) {
	w.st.Errors++
	w.st.LastError = err
	w.st.LastErrorTime = time.Now()
}

func (w *Watcher) emit(ev Event) {
	if w.events == nil {
		return
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	w.events.send(ev)
}

// WaitReady waits until the watcher has applied its first set, and
// returns nil then; or until ctx ends (ctx's error), the source stops
// (an error wrapping [ErrSourceStopped]) or the watcher is closed
// ([ErrClosed]). A service starting up calls it before it takes traffic.
func (w *Watcher) WaitReady(ctx context.Context) error {
	select {
	case <-w.ready:
		return nil
	default:
	}
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-w.done:
		select {
		case <-w.ready:
			return nil
		default:
		}
		if w.ctx.Err() != nil {
			return ErrClosed
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.runErr
	}
}

// Close stops the source and the watcher's goroutines (the drains it
// started included: the backends stay draining) and waits for them. The
// pool keeps its members. Close is idempotent and returns nil; it waits
// for the source's Run to return, so a Source must honour its context.
func (w *Watcher) Close() error {
	w.cancel()
	w.wg.Wait()
	w.events.wait()
	return nil
}
