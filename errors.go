package lb

import "errors"

// Sentinel errors. Errors returned by this package wrap one of them, so
// callers can test with [errors.Is].
var (
	// ErrInvalidBackend: a backend URL or option is not valid.
	ErrInvalidBackend = errors.New("lb: invalid backend")
	// ErrDuplicateBackend: a pool already holds a backend with that URL.
	ErrDuplicateBackend = errors.New("lb: duplicate backend")
	// ErrUnknownBackend: no backend with that URL is in the pool.
	ErrUnknownBackend = errors.New("lb: unknown backend")
	// ErrBackendInUse: the backend already belongs to another pool.
	ErrBackendInUse = errors.New("lb: backend already in a pool")
	// ErrNoHealthyBackend: no backend could take the request. The balancer
	// answers 503 Service Unavailable.
	ErrNoHealthyBackend = errors.New("lb: no healthy backend")
	// ErrAttemptsFailed: every attempt to reach a backend failed. The
	// balancer answers 502 Bad Gateway, or 504 Gateway Timeout when the
	// last attempt timed out.
	ErrAttemptsFailed = errors.New("lb: all attempts failed")
	// ErrClosed: the balancer was closed. It answers 503.
	ErrClosed = errors.New("lb: balancer closed")
)
