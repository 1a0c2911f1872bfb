package discovery

import (
	"context"
	"sync"
	"time"
)

// EventKind tells what an [Event] reports.
type EventKind uint8

const (
	// EventApplied: a set was applied to the pool. Size is the pool's
	// size after it; Added and Removed list the URLs (keys) that changed.
	EventApplied EventKind = iota
	// EventIgnored: a set was not applied; Err says why (it wraps
	// [ErrEmptySet], or is the pool's refusal).
	EventIgnored
	// EventTargetSkipped: one target of a set was left out; Err wraps
	// [ErrInvalidTarget] and Target is the target.
	EventTargetSkipped
	// EventSourceError: the source could not learn the set; Err is its
	// error. The pool keeps the last set applied.
	EventSourceError
	// EventSourceStopped: the source's Run returned before the watcher
	// was closed; Err wraps [ErrSourceStopped] and Run's error, if any.
	EventSourceStopped
)

var eventNames = [...]string{"applied", "ignored", "target-skipped", "source-error", "source-stopped"}

func (k EventKind) String() string {
	if int(k) < len(eventNames) {
		return eventNames[k]
	}
	return "unknown"
}

// MarshalText makes an EventKind read as its name in JSON and logs.
func (k EventKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// Event is something that happened to a watcher.
type Event struct {
	Kind    EventKind
	Time    time.Time
	Size    int      // backends in the pool after an applied set
	Added   []string // keys of the backends an applied set added
	Removed []string // keys of the backends an applied set removed
	Target  Target   // the target skipped, for EventTargetSkipped
	Err     error
}

// eventQueue delivers events to the user's function from one goroutine, so
// that a slow handler never blocks the source's push.
type eventQueue struct {
	f  func(Event)
	ch chan Event
	wg sync.WaitGroup
}

func newEventQueue(ctx context.Context, f func(Event)) *eventQueue {
	q := &eventQueue{f: f, ch: make(chan Event, 256)}
	q.wg.Go(func() {
		for {
			select {
			case ev := <-q.ch:
				q.deliver(ev)
			case <-ctx.Done():
				for {
					select {
					case ev := <-q.ch:
						q.deliver(ev)
					default:
						return
					}
				}
			}
		}
	})
	return q
}

func (q *eventQueue) deliver(ev Event) {
	defer func() { _ = recover() }() // a broken observer must not stop the watcher
	q.f(ev)
}

// send queues ev without blocking; it drops ev if the queue is full.
func (q *eventQueue) send(ev Event) {
	if q == nil {
		return
	}
	select {
	case q.ch <- ev:
	default:
	}
}

func (q *eventQueue) wait() {
	if q != nil {
		q.wg.Wait()
	}
}
