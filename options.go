package lb

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/tinylb/lb/health"
)

// Option configures a [Balancer] in [New].
type Option interface {
	apply(*options)
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// ErrorHandler writes the response for a request the balancer could not
// serve. err wraps [ErrNoHealthyBackend] (the default answer is 503),
// [ErrClosed] (503) or [ErrAttemptsFailed] (502, or 504 when the last
// attempt timed out); errors.Is on context.Canceled tells a client that went
// away. The handler is called before anything was written to w.
type ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)

type options struct {
	transport      http.RoundTripper
	backendProto   BackendProtocol
	logger         *slog.Logger
	retry          RetryPolicy
	errorHandler   ErrorHandler
	checker        health.Checker
	observer       health.Observer
	slowStart      time.Duration
	panicThreshold int
	retryAfter     time.Duration
	flushInterval  time.Duration
	modifyResponse func(*http.Response) error
	events         func(Event)
	trusted        []netip.Prefix
	buffering      RequestBuffering
	bodyMemory     int64
	sticky         *StickyCookie
	now            func() time.Time
	loadReports    *LoadReports

	// viaReverseProxy sends every request through httputil.ReverseProxy,
	// never relay; the tests set it to compare the two paths.
	viaReverseProxy bool
}

// WithTransport sets the RoundTripper that carries requests to backends.
// The default is a private [http.Transport] tuned for a proxy: 256 idle
// connections per backend, a 5 s dial timeout, a 30 s wait for response
// headers, no environment proxy, no gzip of its own (see [NewTransport]);
// its idle connections are closed by [Balancer.Close]. A transport given
// here is the caller's to close; start from NewTransport to change one
// setting and keep the others. [WithBackendProtocol] says what happens
// to it when some requests go over HTTP/2.
func WithTransport(rt http.RoundTripper) Option {
	return optionFunc(func(o *options) { o.transport = rt })
}

// WithLogger sets the logger for state changes and errors. The default
// discards everything. Nothing is logged per request at Info level or above
// except failures.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(o *options) { o.logger = l })
}

// WithRetry sets the retry policy. See [RetryPolicy] for the defaults.
// An invalid policy makes New panic; check it first with
// [RetryPolicy.Validate] when it comes from configuration.
func WithRetry(p RetryPolicy) Option {
	return optionFunc(func(o *options) { o.retry = p })
}

// WithErrorHandler sets the handler that answers requests the balancer
// could not serve, gRPC calls included. The default answers 503 or 502/504
// with the status text as the body, never revealing a backend address; for
// a gRPC call it answers as gRPC does (HTTP 200, a trailers-only
// grpc-status 14 UNAVAILABLE or 4 DEADLINE_EXCEEDED), so that gRPC clients
// read the error instead of an unexpected content type.
func WithErrorHandler(h ErrorHandler) Option {
	return optionFunc(func(o *options) { o.errorHandler = h })
}

// WithHealthCheck turns on active health checking with c, one goroutine per
// backend owned by the balancer. [health.HTTPCheck], [health.TCPCheck] and
// [health.GRPCCheck] (grpc.health.v1) are built in. A checker that
// implements [health.Scheduler] sets its own interval and thresholds;
// otherwise the defaults of [health.Schedule] apply. A checker with a
// CloseIdleConnections method has it called by [Balancer.Close].
func WithHealthCheck(c health.Checker) Option {
	return optionFunc(func(o *options) { o.checker = c })
}

// WithPassiveHealth sets the passive health check: every attempt's outcome
// goes to obs, which may take a backend out of rotation for a while.
// [health.Passive] is nginx's max_fails/fail_timeout. A pool of a single
// backend is never taken out by passive checks alone (as in nginx).
//
// Passive checks are on by default: without this option, or with a nil
// obs, the balancer uses the zero health.Passive, which takes a backend out
// for 10s after one connection error or timeout (nginx's max_fails=1
// fail_timeout=10s). WithPassiveHealth(health.Passive{MaxFails: -1}) turns
// them off: backends stay in rotation whatever their requests do, as with
// nginx's max_fails=0.
func WithPassiveHealth(obs health.Observer) Option {
	return optionFunc(func(o *options) { o.observer = obs })
}

// WithSlowStart makes a backend that comes up (recovers, or is added to a
// running balancer) ramp its share of requests linearly from 1/16 of its
// weight to all of it over d, so that it is not flooded while cold. A new
// outage restarts the ramp. It applies to the weighted strategies and to
// least connections, not to consistent hashing (as in nginx); under
// [BoundedHash] it lowers the backend's share of the bound, not its ring
// points. Zero (the default) turns it off.
func WithSlowStart(d time.Duration) Option {
	return optionFunc(func(o *options) { o.slowStart = d })
}

// WithPanicThreshold sets Envoy's panic threshold, a percentage: when fewer
// than pct percent of the primary backends are healthy, the balancer
// ignores health and spreads requests over all primaries, on the theory
// that overloading the few healthy ones would take them down too. Zero (the
// default) turns panic mode off: with no healthy backend, requests get 503
// at once.
func WithPanicThreshold(pct int) Option {
	return optionFunc(func(o *options) { o.panicThreshold = pct })
}

// WithRetryAfter adds a Retry-After header of d (whole seconds, at least 1)
// to the 503 answered when no backend is available. Off by default.
func WithRetryAfter(d time.Duration) Option {
	return optionFunc(func(o *options) { o.retryAfter = d })
}

// WithFlushInterval sets how often a streamed response is flushed to the
// client, with [httputil.ReverseProxy.FlushInterval]'s meaning: zero (the
// default) flushes event streams and responses of unknown length at once
// and others when the buffer fills; a negative value flushes after every
// write.
func WithFlushInterval(d time.Duration) Option {
	return optionFunc(func(o *options) { o.flushInterval = d })
}

// WithModifyResponse sets a hook run on every backend response before it is
// copied to the client, with [httputil.ReverseProxy.ModifyResponse]'s
// meaning: an error it returns is answered with 502.
func WithModifyResponse(f func(*http.Response) error) Option {
	return optionFunc(func(o *options) { o.modifyResponse = f })
}

// WithEvents sets a function that receives the balancer's [Event]s, of every
// [EventKind]: a backend's state changed ([EventStateChanged]), a backend was
// added or removed ([EventBackendAdded], [EventBackendRemoved]), an attempt
// ended ([EventAttemptDone]), a failed attempt is retried elsewhere
// ([EventRetry]), a drain finished ([EventDrained]). Events are delivered in
// order by one goroutine the balancer owns, never on the request path; if f
// falls behind, events are dropped and counted rather than slowing requests.
func WithEvents(f func(Event)) Option {
	return optionFunc(func(o *options) { o.events = f })
}

// validate panics with a message naming the field when o cannot work, as
// http.ServeMux.Handle does for a bad pattern: these are programming
// errors, not run-time input.
func (o *options) validate() {
	if err := o.retry.Validate(); err != nil {
		panic(err.Error())
	}
	if err := o.backendProto.validate(); err != nil {
		panic(err.Error())
	}
	if o.slowStart < 0 {
		panic(fmt.Sprintf("lb: WithSlowStart(%v): must not be negative", o.slowStart))
	}
	if o.panicThreshold < 0 || o.panicThreshold > 100 {
		panic(fmt.Sprintf("lb: WithPanicThreshold(%d): must be between 0 and 100", o.panicThreshold))
	}
	if o.retryAfter < 0 {
		panic(fmt.Sprintf("lb: WithRetryAfter(%v): must not be negative", o.retryAfter))
	}
	if o.loadReports != nil {
		if err := o.loadReports.Validate(); err != nil {
			panic(err.Error())
		}
	}
	if v, ok := o.checker.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			panic(err.Error())
		}
	}
	if sc, ok := o.checker.(health.Scheduler); ok {
		if err := sc.Schedule().Validate(); err != nil {
			panic(err.Error())
		}
	}
	if o.sticky != nil {
		if err := o.sticky.Validate(); err != nil {
			panic("lb: WithStickyCookie: " + err.Error())
		}
	}
	if v, ok := o.observer.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			panic(err.Error())
		}
	}
}
