// Package discovery keeps a [lb.Pool] in step with the place where a
// service's backends are listed: DNS here, etcd and Kubernetes in their own
// modules (github.com/tinylb/lb/discovery/etcd and
// github.com/tinylb/lb/discovery/kubernetes), so that the library itself
// needs nothing beyond the standard library.
//
// A [Source] reports whole backend sets; a Watcher applies each one to a pool
// with [lb.Pool.Update], which keeps the health state and counters of the
// backends that stay.
package discovery

import "context"

// Target is one backend as a source reports it.
type Target struct {
	// URL is the backend's base URL, as [lb.NewBackend] takes it.
	URL string
	// Weight is the backend's weight; 0 means 1.
	Weight int
	// Backup puts the backend in the backup tier: it takes requests only
	// when no primary backend is usable.
	Backup bool
	// Draining says the backend is going away (a Kubernetes endpoint that
	// is terminating): requests in flight on it finish, new ones go
	// elsewhere.
	Draining bool
	// Zone is the backend's locality, when the source knows it.
	Zone string
	// Metadata holds whatever else the source knows about the backend.
	Metadata map[string]string
}

// Source finds the backends of one service.
type Source interface {
	// Run reports the source's backends until ctx ends. It calls push with
	// the whole current set when it is first known and each time it may
	// have changed, or with a non-nil error when it could not learn the
	// set (the watcher then keeps the last good one). push returns quickly
	// and is never called concurrently with itself; Run does not call it
	// after returning. Run returns when ctx is done, or earlier with an
	// error it cannot recover from.
	Run(ctx context.Context, push func(set []Target, err error)) error
}

// SourceFunc adapts a function to [Source].
type SourceFunc func(ctx context.Context, push func(set []Target, err error)) error

// Run calls f.
func (f SourceFunc) Run(ctx context.Context, push func(set []Target, err error)) error {
	return f(ctx, push)
}
