package health

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tinylb/lb/internal/passive"
)

// defaultFailTimeout is the FailTimeout of a [Passive] that sets none:
// nginx's fail_timeout=10s. The default MaxFails, nginx's max_fails=1, is
// in package internal/passive, which the balancer reads too.
const defaultFailTimeout = 10 * time.Second

// Passive is an [Observer] after nginx's max_fails and fail_timeout: a
// backend that fails MaxFails attempts within FailTimeout is taken out of
// rotation for FailTimeout from its last failure. The zero value takes a
// backend out for 10s after one connection error or timeout, as nginx
// does by default; it is what the balancer uses when no passive check is
// configured, and a negative MaxFails is how to turn passive checks off.
//
// An attempt fails when it ends with an error (a connection error, a
// timeout, a response body cut short, a gRPC backend's Trailers-Only
// UNAVAILABLE: see [Outcome]) or with a status listed in FailStatuses.
// An attempt that the client canceled, or whose error is
// [context.Canceled], never fails, and neither does a 4xx status.
//
// Passive differs from nginx in these ways:
//   - The window slides: each failure is forgotten FailTimeout after it
//     happened, and only MaxFails failures within one FailTimeout take a
//     backend out. nginx measures fail_timeout from the last failure
//     only, so failures spread over any length of time add up.
//   - A successful attempt does not erase earlier failures; only
//     [Tracker.Reset] does. nginx forgets them at the first success after
//     fail_timeout.
//   - A MaxFails of 0 means the default, 1; a negative MaxFails never
//     takes a backend out (nginx's max_fails=0), though Observe still
//     reports which attempts failed.
//   - Times are exact, not whole seconds. As in nginx the window is
//     inclusive: a failure at t still counts at t+FailTimeout.
//   - A listed status counts on every attempt, the last try included,
//     and only 5xx statuses can be listed (nginx can list http_429).
//
// As in nginx, once a backend has been taken out, its next failure takes
// it out again at once, until an attempt on it succeeds or its tracker is
// reset.
//
// Each tracker has its own lock, taken only by failures, so backends never
// contend with each other and successes never wait.
type Passive struct {
	// MaxFails is the number of failures within FailTimeout that take a
	// backend out of rotation. Default 1; negative means never, which
	// turns passive health checking off.
	MaxFails int
	// FailTimeout is both how long a failure is remembered and how long a
	// backend stays out of rotation. Default 10s.
	FailTimeout time.Duration
	// FailStatuses lists the 5xx statuses that count as failures, such as
	// 500, 502, 503 and 504. Default none: only errors count, as with
	// nginx's default proxy_next_upstream.
	FailStatuses []int
}

var _ Observer = Passive{}

// Validate reports the first impossible setting of p, naming its field: a
// negative FailTimeout or a FailStatuses entry outside 500–599. The zero
// Passive is valid.
func (p Passive) Validate() error {
	if p.FailTimeout < 0 {
		return fmt.Errorf("health: negative FailTimeout %v", p.FailTimeout)
	}
	for _, s := range p.FailStatuses {
		if s < 500 || s > 599 {
			return fmt.Errorf("health: FailStatuses entry %d outside 500-599", s)
		}
	}
	return nil
}

// Track returns a new [Tracker] for one backend, with a copy of p's
// settings; target is not used. Invalid settings are treated as the
// defaults: a negative FailTimeout as 10s, and FailStatuses entries outside
// 500–599 are ignored.
func (p Passive) Track(target *url.URL) Tracker {
	t := &tracker{maxFails: passive.Threshold(p.MaxFails), window: p.FailTimeout}
	if t.window <= 0 {
		t.window = defaultFailTimeout
	}
	for _, s := range p.FailStatuses {
		if s >= 500 && s <= 599 {
			t.statuses[(s-500)/64] |= 1 << ((s - 500) % 64)
		}
	}
	return t
}

// tracker is the Tracker of Passive.
type tracker struct {
	// Settings, fixed by Track.
	maxFails int // 0: never eject
	window   time.Duration
	statuses [2]uint64 // bit s-500 set for each listed status s

	// probation is set when the backend is taken out, and cleared by a
	// success or Reset; while it is set, one failure takes it out again.
	probation atomic.Bool

	mu sync.Mutex // protects fails and next
	// fails holds the times of the last maxFails failures, in the order
	// they were recorded; it grows up to maxFails, then is a ring.
	fails []time.Time
	next  int // index in fails of the oldest failure, once fails is full
}

// Observe implements [Tracker]. A zero o.Time means now.
func (t *tracker) Observe(o Outcome) (failed bool, ejectUntil time.Time) {
	if !t.failure(o) {
		if t.probation.Load() {
			t.probation.Store(false)
		}
		return false, time.Time{}
	}
	if t.maxFails == 0 {
		return true, time.Time{}
	}
	now := o.Time
	if now.IsZero() {
		now = time.Now()
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.fails) < t.maxFails {
		t.fails = append(t.fails, now)
	} else {
		t.fails[t.next] = now
		t.next = (t.next + 1) % t.maxFails
	}
	// With fails full, t.next is now the oldest of the last maxFails.
	full := len(t.fails) == t.maxFails && now.Sub(t.fails[t.next]) <= t.window
	if !full && !t.probation.Load() {
		return true, time.Time{}
	}
	t.probation.Store(true)
	return true, now.Add(t.window)
}

// failure reports whether o counts as a failure.
func (t *tracker) failure(o Outcome) bool {
	switch {
	case o.Canceled || errors.Is(o.Err, context.Canceled):
		return false
	case o.Err != nil:
		return true
	case o.Status >= 500 && o.Status <= 599:
		s := o.Status - 500
		return t.statuses[s/64]&(1<<(s%64)) != 0
	}
	return false
}

// Reset implements [Tracker].
func (t *tracker) Reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.fails)
	t.fails = t.fails[:0]
	t.next = 0
	t.probation.Store(false)
}
