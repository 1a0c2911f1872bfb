package discovery

import "errors"

// Sentinel errors. The errors this package reports (through the logger,
// [Event].Err and [Stats].LastError) wrap one of them, so callers can test
// with [errors.Is].
var (
	// ErrInvalidTarget: a target of a set has a URL or weight that
	// [lb.NewBackend] refuses, or repeats another target's URL. The
	// watcher skips that target and applies the others.
	ErrInvalidTarget = errors.New("discovery: invalid target")
	// ErrEmptySet: the source reported a set with no usable target. The
	// watcher keeps the pool as it is unless [WithAllowEmpty] was given.
	ErrEmptySet = errors.New("discovery: empty backend set")
	// ErrNotFound: the DNS name does not exist (NXDOMAIN). A DNS source
	// reports it as an error, not as an empty set, so that a zone being
	// republished or a typo in a new record never empties a pool.
	ErrNotFound = errors.New("discovery: no such DNS name")
	// ErrLookup: a DNS lookup failed (SERVFAIL, a timeout, a refused
	// query...). The watcher keeps the last good set.
	ErrLookup = errors.New("discovery: DNS lookup failed")
	// ErrClosed: the watcher was closed.
	ErrClosed = errors.New("discovery: watcher closed")
	// ErrSourceStopped: the source's Run returned before the watcher was
	// closed; the pool keeps the last set applied.
	ErrSourceStopped = errors.New("discovery: source stopped")
)
