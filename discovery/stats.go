package discovery

import "time"

// Stats is a snapshot of a watcher's counters.
type Stats struct {
	Updates int64 // sets applied to the pool
	Ignored int64 // sets not applied: empty, or refused by the pool
	Skipped int64 // targets left out of the sets applied (bad URL or weight, repeated URL)
	Errors  int64 // errors of the source, its stopping included
	// LastError is the source's last error, nil if it never had one;
	// LastErrorTime is when it came.
	LastError     error
	LastErrorTime time.Time
	LastUpdate    time.Time // when the last set was applied; zero before the first
	Size          int       // backends in the pool now
	Draining      int       // backends the watcher is draining
}

// Stats returns the watcher's counters.
func (w *Watcher) Stats() Stats {
	w.mu.Lock()
	st := w.st
	w.mu.Unlock()
	if w.pool != nil {
		st.Size = w.pool.Len()
	}
	return st
}
