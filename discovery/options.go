package discovery

import (
	"log/slog"
	"time"
)

// DefaultDebounce is how long a watcher gathers the sets of a burst before
// it applies the latest one (see [WithDebounce]).
const DefaultDebounce = 100 * time.Millisecond

// Option configures a [Watcher] in [Watch].
type Option interface {
	apply(*options)
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	debounce   time.Duration
	allowEmpty bool
	logger     *slog.Logger
	events     func(Event)
}

// WithDebounce sets how long the watcher waits, after a set arrives while
// none is pending, before it applies the latest set received: a source
// that reports every endpoint of a rolling restart one by one (a
// Kubernetes EndpointSlice does) costs one pool update per window, not one
// per change. The window is not extended by the sets that arrive in it, so
// a source that never stops reporting is still applied once per window.
// The first set is applied at once. The default is [DefaultDebounce]; 0
// applies every set as it comes; a negative value means 0.
func WithDebounce(d time.Duration) Option {
	return optionFunc(func(o *options) { o.debounce = max(d, 0) })
}

// WithAllowEmpty lets a set with no usable target empty the pool. Without
// it the watcher keeps the last non-empty set and reports the empty one
// ([EventIgnored] with [ErrEmptySet]): a service whose every backend
// disappears at once is far more often a broken source (a DNS zone being
// republished, a label typo, a controller restarting) than a service that
// really has no backend, and an empty pool answers every request 503.
func WithAllowEmpty() Option {
	return optionFunc(func(o *options) { o.allowEmpty = true })
}

// WithLogger sets the logger for the source's errors (Warn), skipped
// targets and ignored sets (Warn), and applied sets (Info when the
// membership changed, Debug otherwise). The default discards everything.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(o *options) { o.logger = l })
}

// WithEvents calls f with every [Event], from one goroutine of the watcher,
// in order. A slow f never delays the source or the pool: events that find
// 256 others queued are dropped. A panic in f is recovered.
func WithEvents(f func(Event)) Option {
	return optionFunc(func(o *options) { o.events = f })
}
