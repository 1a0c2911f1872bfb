package etcd

import (
	"fmt"
	"log/slog"
	"time"
)

// Option configures a source made by [New].
type Option interface {
	apply(*options)
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// Defaults of the options.
const (
	defaultRequestTimeout = 5 * time.Second
	defaultMinBackoff     = 100 * time.Millisecond
	defaultMaxBackoff     = 10 * time.Second
)

type options struct {
	logger         *slog.Logger
	requestTimeout time.Duration
	minBackoff     time.Duration
	maxBackoff     time.Duration
}

func newOptions(opts []Option) options {
	o := options{
		logger:         slog.New(slog.DiscardHandler),
		requestTimeout: defaultRequestTimeout,
		minBackoff:     defaultMinBackoff,
		maxBackoff:     defaultMaxBackoff,
	}
	for _, opt := range opts {
		if opt != nil {
			opt.apply(&o)
		}
	}
	return o
}

// WithLogger sets where the source logs: a warning for each key it skips
// (its value is not a backend, or it names the same backend as a key
// before it), and information on reconnections and compactions. Skipped
// keys are only logged: the source pushes the set of the good ones, since
// one bad key must not empty a pool. The default logs nothing; nil keeps
// the default.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(o *options) {
		if l != nil {
			o.logger = l
		}
	})
}

// WithRequestTimeout bounds each read of the whole prefix (the first one,
// and those after a compaction or a failed read). A read that times out is
// pushed as an error and tried again. The default is 5 s. It panics if d
// is negative; 0 keeps the default.
func WithRequestTimeout(d time.Duration) Option {
	if d < 0 {
		panic(fmt.Sprintf("etcd: WithRequestTimeout(%v): must not be negative", d))
	}
	return optionFunc(func(o *options) {
		if d > 0 {
			o.requestTimeout = d
		}
	})
}

// WithBackoff sets the wait before trying again after a failed read or
// watch: min after the first failure, doubling up to max, and back to min
// after a success. The defaults are 100 ms and 10 s. It panics if min or
// max is not positive or min is over max, as a static option that cannot
// work should fail where it is written.
func WithBackoff(min, max time.Duration) Option {
	if min <= 0 || max <= 0 || min > max {
		panic(fmt.Sprintf("etcd: WithBackoff(%v, %v): want 0 < min <= max", min, max))
	}
	return optionFunc(func(o *options) { o.minBackoff, o.maxBackoff = min, max })
}
