package kubernetes

import (
	"log/slog"
	"time"
)

// Option configures a source made by [New].
type Option interface {
	apply(*options)
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// defaultSyncTimeout is how long Run waits for the first complete list of
// EndpointSlices before it reports [ErrNotSynced].
const defaultSyncTimeout = 30 * time.Second

type options struct {
	portName    string
	portSet     bool
	scheme      string
	resync      time.Duration
	syncTimeout time.Duration
	logger      *slog.Logger
}

// WithPort picks the Service port, by the name it has in the Service's
// ports (and so in its EndpointSlices). It is needed when the Service has
// more than one TCP port; "" names the unnamed port of a single-port
// Service. Without it the slices' only TCP port is used. EndpointSlices
// that lack the port (their pods do not expose a named targetPort) give no
// backends; when every slice with endpoints lacks it the source reports
// [ErrPortNotFound].
func WithPort(name string) Option {
	return optionFunc(func(o *options) { o.portName, o.portSet = name, true })
}

// WithScheme sets the scheme of the backend URLs, "http" or "https" (Run
// returns [ErrInvalidConfig] for anything else). By default it is https
// when the port's appProtocol is "https" or its name is "https" or starts
// with "https-" (the Istio naming convention), and http otherwise.
func WithScheme(scheme string) Option {
	return optionFunc(func(o *options) { o.scheme = scheme })
}

// WithResync makes the source push its current set again every d even
// when nothing changed, so that a pool changed by hand in the meantime is
// put back in step. 0, the default, pushes only on changes. It is the
// counterpart of client-go's informer resync period, which replays the
// informer's cache to its handlers and fetches nothing new either.
func WithResync(d time.Duration) Option {
	return optionFunc(func(o *options) { o.resync = d })
}

// WithSyncTimeout sets how long Run waits for the informer's first
// complete list before it reports [ErrNotSynced] (once; it goes on
// waiting, and pushes the set when the list arrives). The default is 30 s.
func WithSyncTimeout(d time.Duration) Option {
	return optionFunc(func(o *options) { o.syncTimeout = d })
}

// WithLogger sets the logger for list and watch failures and for
// endpoints that are skipped; client-go's own contextual logs of the
// informer go there too. The default discards everything.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(o *options) { o.logger = l })
}
