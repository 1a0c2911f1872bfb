package lb

import (
	"math"
	"runtime/debug"
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

// bodyMemory bounds the bytes of request bodies the balancer holds at once,
// kept for a replay or read ahead by request buffering. Without a bound,
// clients that announce large bodies and send them slowly (or not at all)
// make the balancer hold whatever they send; with it, a body that finds no
// room streams to the backend without a copy and is not retried once sent.
// The zero value (no semaphore) counts but does not bound.
type bodyMemory struct {
	sem        *semaphore.Weighted
	held       atomic.Int64 // bytes reserved now
	unbuffered atomic.Int64 // requests whose body found no room
}

// defaultBodyMemory is the bound when WithBodyMemory does not set one:
// 64 MiB, or an eighth of the Go runtime's soft memory limit (GOMEMLIMIT)
// when one is set and smaller.
func defaultBodyMemory() int64 {
	const def = 64 << 20
	if lim := debug.SetMemoryLimit(-1); lim != math.MaxInt64 {
		return max(min(lim/8, def), 1<<20)
	}
	return def
}

// init sets the bound: limit bytes, the default if 0, none if negative.
func (m *bodyMemory) init(limit int64) {
	if limit == 0 {
		limit = defaultBodyMemory()
	}
	if limit > 0 {
		m.sem = semaphore.NewWeighted(limit)
	}
}

// reserve takes n bytes from the bound, without waiting: a request never
// waits for another's memory.
func (m *bodyMemory) reserve(n int64) bool {
	if n <= 0 {
		return true
	}
	if m.sem != nil && !m.sem.TryAcquire(n) {
		return false
	}
	m.held.Add(n)
	return true
}

func (m *bodyMemory) free(n int64) {
	if n <= 0 {
		return
	}
	m.held.Add(-n)
	if m.sem != nil {
		m.sem.Release(n)
	}
}
