package lb

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// State is a backend's state as one balancer sees it.
type State uint8

const (
	// StateUp: the backend takes requests at its full weight.
	StateUp State = iota
	// StateSlowStart: the backend takes requests at a weight that ramps up
	// (see [WithSlowStart]).
	StateSlowStart
	// StateDown: the active health check failed Fall times in a row (or
	// the first check failed); no requests until it passes Rise times.
	StateDown
	// StateEjected: passive health took the backend out after too many
	// failed requests; it comes back after the fail timeout.
	StateEjected
	// StateProbing: the ejection is over and one probe request decides
	// whether the backend is back.
	StateProbing
	// StateDraining: the backend takes no new requests and its requests in
	// flight finish (see [Pool.Drain]).
	StateDraining
	// StateMaintenance: the backend was taken out by hand (see
	// [Pool.SetMaintenance]); health checks do not bring it back.
	StateMaintenance
	// StateClosed: the balancer was closed (see [Balancer.Close]); it
	// sends the backend nothing more. Only [Balancer.Stats] reports it:
	// no event announces it.
	StateClosed
)

var stateNames = [...]string{"up", "slow-start", "down", "ejected", "probing", "draining", "maintenance", "closed"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// EventKind tells what an [Event] reports.
type EventKind uint8

const (
	// EventStateChanged: a backend's state changed from From to To.
	EventStateChanged EventKind = iota
	// EventBackendAdded: a backend joined the pool.
	EventBackendAdded
	// EventBackendRemoved: a backend left the pool.
	EventBackendRemoved
	// EventAttemptDone: an attempt on Backend ended (its response body was
	// closed, or it failed). Status, Err, Latency and Failed describe it.
	EventAttemptDone
	// EventRetry: the attempt on Backend failed with Err and the request
	// is being retried on another backend.
	EventRetry
	// EventDrained: a drain of Backend finished: its last request in
	// flight ended.
	EventDrained
)

var eventNames = [...]string{"state-changed", "backend-added", "backend-removed", "attempt-done", "retry", "drained"}

func (k EventKind) String() string {
	if int(k) < len(eventNames) {
		return eventNames[k]
	}
	return "unknown"
}

// Event is something that happened to a backend of a balancer.
type Event struct {
	Kind    EventKind
	Time    time.Time
	Backend *Backend
	From    State  // the state before, for EventStateChanged
	To      State  // the state after, for EventStateChanged
	Reason  string // why, in words, for EventStateChanged

	// For EventAttemptDone (Err also for EventRetry):
	Status  int           // response status; 0 if none arrived
	Err     error         // the attempt's error; nil if a response came back whole
	Latency time.Duration // time to response headers (or to the error)
	Failed  bool          // the attempt counted as a backend failure
}

// eventQueue delivers events to the user's function from one goroutine, so
// that a slow handler never blocks the request path or the pool's lock.
type eventQueue struct {
	f       func(Event)
	ch      chan Event
	dropped atomic.Int64
	wg      sync.WaitGroup
}

func newEventQueue(ctx context.Context, f func(Event)) *eventQueue {
	q := &eventQueue{f: f, ch: make(chan Event, 1024)}
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

// deliver calls the user's function, surviving its panics: a broken
// observer must not take the balancer down with it.
func (q *eventQueue) deliver(ev Event) {
	defer func() { _ = recover() }()
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
		q.dropped.Add(1)
	}
}

func (q *eventQueue) wait() {
	if q != nil {
		q.wg.Wait()
	}
}

func (q *eventQueue) droppedCount() int64 {
	if q == nil {
		return 0
	}
	return q.dropped.Load()
}

// MarshalText makes a State read as its name in JSON and logs.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// MarshalText makes an EventKind read as its name in JSON and logs.
func (k EventKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }
