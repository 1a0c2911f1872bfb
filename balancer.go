// Package lb is an embeddable HTTP load balancer: a [Balancer] is an
// [http.Handler] that spreads requests over a [Pool] of [Backend]s with a
// pluggable [Strategy], retries failed attempts on other backends when that
// is safe, and checks backend health actively and passively.
//
//	a, _ := lb.NewBackend("http://10.0.0.1:8080", lb.WithWeight(5))
//	b, _ := lb.NewBackend("http://10.0.0.2:8080")
//	pool, _ := lb.NewPool(a, b)
//	bal := lb.New(pool, lb.SmoothWeighted())
//	defer bal.Close()
//	http.Handle("/", bal)
//
// The request path takes no lock shared by all requests: every change of
// membership or health is made under the pool's lock and publishes an
// immutable snapshot, and a request does one atomic load and then asks the
// strategy's picker. Proxying does what [httputil.ReverseProxy] does with
// a Rewrite hook, so hop-by-hop headers, trailers, streaming and protocol
// upgrades behave as the standard library defines: requests that upgrade
// the connection or need a periodic flush go through ReverseProxy, and
// the others through a leaner copy of its steps. Backends are spoken to
// over HTTP/1.1 unless [WithBackendProtocol] sends gRPC calls, or every
// request but upgrades, over HTTP/2 (h2c or h2), so that one balancer
// serves gRPC and WebSocket from the same backends.
package lb

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tinylb/lb/health"
	"github.com/tinylb/lb/internal/loadweight"
	"github.com/tinylb/lb/strategy"
)

// Balancer is an [http.Handler] that proxies each request to a backend of
// its pool, and an [io.Closer] that stops the goroutines it started. Create
// it with [New].
type Balancer struct {
	pool  *Pool
	strat strategy.Strategy
	o     options
	log   *slog.Logger
	now   func() time.Time

	proxy     httputil.ReverseProxy
	transport attemptTransport
	ownTr     interface{ CloseIdleConnections() } // the default transport, closed by Close
	ownH2     *http.Transport                     // the HTTP/2 copy of the transport, if any, closed by Close

	snap       atomic.Pointer[snapshot]
	refreshing atomic.Bool // one request at a time rebuilds an expired snapshot
	closed     atomic.Bool
	stats      balancerStats
	mem        bodyMemory   // bounds request bodies held for buffering and replay
	inflight   atomic.Int64 // requests in RoundTrip, counted only under a retry budget
	retrying   atomic.Int64 // requests retrying now, under a retry budget
	load       *loadState   // dynamic weights (WithLoadReports); nil without

	ctx    context.Context // ends at Close; parent of every checker's context
	cancel context.CancelFunc
	wg     sync.WaitGroup // health checkers, load pollers, the load weight updater
	events *eventQueue

	// Guarded by pool.mu.
	checkers map[*Backend]context.CancelFunc
	trackers map[*Backend]health.Tracker
	states   map[*Backend]State // last published state of each backend
	// stickyEntries holds each member's sticky cookie, made once; nil
	// without WithStickyCookie.
	stickyEntries map[*Backend]stickyEntry
	started       bool // New is done: backends added from now on slow-start
	maxFails      int  // failure threshold the smooth weighted strategies use
}

// snapshot is what a request needs, published as a whole. It is never
// modified after it is stored.
type snapshot struct {
	picker    strategy.Picker
	observer  strategy.Observer        // picker's feedback hook, nil if it has none
	latency   strategy.LatencyObserver // observer, if it also takes latencies; else nil
	backends  []*Backend               // strategy.Set.All
	trackers  []health.Tracker         // passive-health state of each backend; nil entries without
	windows   []*loadweight.Window     // load reports of each backend; nil without WithLoadReports
	factors   []int                    // load factor of each backend in 1/loadweight.Scale units; nil without
	gated     []bool                   // backends whose next request is a probe; nil when none
	usable    int                      // number of usable backends
	refreshAt int64                    // UnixNano when the snapshot must be rebuilt; 0 never
	closed    bool
	panicking bool        // panic mode: balancing over unhealthy backends
	states    []State     // state of each backend, for Stats
	weights   []int       // strategy.Set.Weights, for Stats
	scale     int         // strategy.Set.Scale
	sticky    *stickySnap // for WithStickyCookie; nil without it
}

// Strategy chooses a backend for each request. See package
// [github.com/tinylb/lb/strategy] for the interface and how to write one.
type Strategy = strategy.Strategy

// KeyFunc extracts the hashing key of a request for [ConsistentHash] and
// [BoundedHash]. An empty key means "no affinity": the request is balanced
// round robin.
type KeyFunc func(*http.Request) string

// RoundRobin returns a strategy that sends requests to the usable backends
// in turn, ignoring weights: a lock-free counter over the current snapshot,
// so a backend that is down has its share spread evenly over the others.
// Retries take turns of their own among the backends the request has not
// tried, so a failing backend's retries never move other requests' turns.
func RoundRobin() Strategy { return strategy.NewRoundRobin() }

// SmoothWeighted returns nginx's smooth weighted round robin: shares follow
// the weights and the picks of a heavy backend are spread out (weights
// 5/1/1 give a a b a c a a). With passive health checks on, a failure lowers
// the backend's effective weight by weight/MaxFails and each later pass
// restores one unit, as nginx does.
func SmoothWeighted() Strategy { return strategy.NewSmoothWeighted() }

// LeastConn returns nginx's weighted least connections: the backend with
// the fewest requests in flight relative to its weight, ties broken by the
// smooth weighted pass. Streams and upgraded connections count until they
// close.
func LeastConn() Strategy { return strategy.NewLeastConn() }

// LeastRequest returns Envoy's least_request: power of two random choices.
// Each request draws two backends at random, in proportion to their
// weights, and goes to the one with fewer requests in flight (at unequal
// weights, the higher weight/(in flight+1)). Picks take no lock, so it
// scales where LeastConn's scan under a mutex does not, at the price of a
// choice that is best of two rather than best of all.
// [strategy.NewLeastRequest] sets the number of draws and Envoy's
// active_request_bias.
func LeastRequest() Strategy {
	s, _ := strategy.NewLeastRequest(strategy.LeastRequestConfig{}) // the zero config is valid
	return s
}

// PeakEWMA returns Finagle's and Linkerd's peak EWMA: power of two random
// choices on each backend's latency average times its requests in flight
// plus one. The average takes a slower answer at once and forgets it with a
// decay time of 10s, so traffic moves away from a backend as soon as it
// slows down, and back as it recovers. Latencies are measured from the
// pick to the end of the response body, failures included.
// [strategy.NewPeakEWMA] sets the decay time and the number of draws.
func PeakEWMA() Strategy {
	s, _ := strategy.NewPeakEWMA(strategy.PeakEWMAConfig{}) // the zero config is valid
	return s
}

// ConsistentHash returns a ketama consistent-hash ring (nginx's "hash
// consistent": 160 points per weight unit, derived from each backend's
// address) keyed by key. Requests with the same key go to the same backend
// while it is usable; a backend going down moves only its own keys, to the
// next backend on the ring. An empty key falls back to round robin.
func ConsistentHash(key KeyFunc) Strategy { return strategy.NewConsistentHash(key) }

// BoundedHash returns consistent hashing with bounded loads (Mirrokni et
// al., SODA 2018) on the [ConsistentHash] ring: a key goes to its backend
// on the ring unless that backend already has its share of the requests
// in flight, c times the average (by weight, rounded up), and then to the
// next backend along the ring with room. This is HAProxy's
// "hash-balance-factor" with c = factor/100: 1.25 holds every backend
// to 125% of the average, so a hot key spills over to a few neighbours
// instead of overloading one backend, and returns home as its load falls.
// While loads are low every key goes where ConsistentHash sends it. An
// empty key falls back to round robin.
//
// c must be a finite number of at least 1. BoundedHash does not fail: a c
// below 1 (or NaN) works as 1 and +Inf as no bound, but New refuses such a
// strategy with a panic naming it, as it does options that cannot work.
// The strategy is a [*strategy.BoundedHash]; check a c from configuration
// first with its Validate method, whose error wraps
// [strategy.ErrInvalidBalanceFactor]:
//
//	s := strategy.NewBoundedHash(lb.HeaderKey("X-User"), cfg.BalanceFactor)
//	if err := s.Validate(); err != nil {
//		return err
//	}
//	bal := lb.New(pool, s)
func BoundedHash(key KeyFunc, c float64) Strategy { return strategy.NewBoundedHash(key, c) }

// New returns a balancer over pool using s (round robin if nil). It starts
// the health checkers the options ask for; [Balancer.Close] stops them.
//
// Passive health checking is on unless an option turns it off: without
// [WithPassiveHealth], a backend whose attempt fails with a connection
// error or a timeout is taken out of rotation for 10s, as nginx's defaults
// (max_fails=1 fail_timeout=10s) do, so that a dead backend does not cost
// every request a failed attempt. WithPassiveHealth(health.Passive{MaxFails:
// -1}) turns that off.
//
// Options that cannot work (a negative duration, a threshold out of range)
// make New panic with a message naming the option: they are programming
// errors. So does a strategy with a Validate() error method that reports
// one, such as [BoundedHash] with a c below 1. Check options and strategies
// that come from configuration with their Validate methods first.
func New(pool *Pool, s Strategy, opts ...Option) *Balancer {
	if pool == nil {
		panic("lb: New with a nil *Pool")
	}
	if s == nil {
		s = RoundRobin()
	}
	if v, ok := s.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			panic("lb: New: " + err.Error())
		}
	}
	b := &Balancer{pool: pool, strat: s, now: time.Now}
	for _, o := range opts {
		if o != nil {
			o.apply(&b.o)
		}
	}
	if b.o.observer == nil {
		b.o.observer = health.Passive{} // nginx's max_fails=1 fail_timeout=10s
	}
	b.o.validate()
	if b.o.sticky != nil {
		*b.o.sticky = b.o.sticky.withDefaults()
		b.stickyEntries = make(map[*Backend]stickyEntry)
	}
	b.o.retry = b.o.retry.withDefaults()
	b.o.buffering = b.o.buffering.withDefaults()
	b.mem.init(b.o.bodyMemory)
	if b.o.now != nil {
		b.now = b.o.now
	}
	b.log = b.o.logger
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	b.maxFails = passiveThreshold(b.o.observer)
	base := b.o.transport
	if base == nil {
		tr := NewTransport()
		base, b.ownTr = tr, tr
	}
	b.transport = attemptTransport{b: b, base: b.newBackendTransport(base)}
	b.proxy = httputil.ReverseProxy{
		Rewrite:        b.rewrite,
		Transport:      &b.transport,
		FlushInterval:  b.o.flushInterval,
		ErrorHandler:   b.serveError,
		BufferPool:     sharedBufferPool,
		ErrorLog:       slog.NewLogLogger(b.log.Handler(), slog.LevelDebug),
		ModifyResponse: b.proxyResponse,
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	if b.o.events != nil {
		b.events = newEventQueue(b.ctx, b.o.events)
	}
	b.checkers = make(map[*Backend]context.CancelFunc)
	b.trackers = make(map[*Backend]health.Tracker)
	b.states = make(map[*Backend]State)
	if b.o.loadReports != nil {
		b.load = newLoadState(*b.o.loadReports)
		b.wg.Go(func() { b.runLoadUpdates(b.ctx) })
	}

	pool.mu.Lock()
	defer pool.mu.Unlock()
	pool.attachLocked(b)
	for _, be := range pool.backends {
		b.addedLocked(be)
	}
	b.started = true
	b.publishLocked()
	return b
}

// ServeHTTP proxies r to a backend chosen by the strategy.
func (b *Balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == "PRI" && r.ProtoMajor == 2 {
		refusePreface(w)
		return
	}
	s := b.snapshot()
	if s.usable == 0 {
		err := ErrNoHealthyBackend
		if s.closed {
			err = ErrClosed
		}
		b.serveError(w, r, err)
		return
	}
	rb := b.newBody(r)
	if rb != nil {
		defer rb.Close()
		if b.buffers(r) {
			if err := b.readAhead(w, r, rb); err != nil {
				b.serveError(w, r, err)
				return
			}
		}
	}
	if b.relays(r) {
		b.relay(w, r, rb)
		return
	}
	if rb != nil {
		// ReverseProxy wraps the body it hands the transport; the
		// transport finds rb in the context instead.
		r = r.WithContext(context.WithValue(r.Context(), bodyKey{}, rb))
	}
	iw := interimWriters.Get().(*interimWriter)
	iw.ResponseWriter, iw.n1xx = w, 0
	defer func() {
		iw.ResponseWriter = nil
		interimWriters.Put(iw)
	}()
	b.proxy.ServeHTTP(iw, r)
}

// Close stops every goroutine the balancer started (health checkers, the
// event dispatcher) and waits for them, and closes the idle connections of
// the default transport and of the HTTP/2 copy [WithBackendProtocol]
// makes. Requests in flight finish; new requests get 503.
// Close is idempotent and always returns nil.
func (b *Balancer) Close() error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	b.pool.mu.Lock()
	b.pool.detachLocked(b)
	for be, stop := range b.checkers {
		stop()
		delete(b.checkers, be)
	}
	b.snap.Store(&snapshot{closed: true, scale: 1})
	b.pool.mu.Unlock()

	b.cancel()
	b.wg.Wait()
	b.events.wait()
	if b.ownTr != nil {
		b.ownTr.CloseIdleConnections()
	}
	// A checker that keeps connections between checks (health.GRPCCheck)
	// lets them go now rather than when they time out. Its transports
	// are shared by checkers of the same schedule, so another balancer's
	// next check may redial: a cost paid once.
	if c, ok := b.o.checker.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
	if b.ownH2 != nil {
		b.ownH2.CloseIdleConnections()
	}
	return nil
}

// Pool returns the pool the balancer spreads requests over.
func (b *Balancer) Pool() *Pool { return b.pool }

// snapshot returns the current snapshot, rebuilding it first if it has
// expired (a passive ejection ended, a slow-start step is due). Expiry is
// computed lazily from the clock: no timer runs for it.
func (b *Balancer) snapshot() *snapshot {
	s := b.snap.Load()
	if s.refreshAt != 0 && b.now().UnixNano() >= s.refreshAt && b.refreshing.CompareAndSwap(false, true) {
		b.pool.mu.Lock()
		if !b.closed.Load() {
			b.publishLocked()
		}
		b.pool.mu.Unlock()
		b.refreshing.Store(false)
		s = b.snap.Load()
	}
	return s
}

// proxyResponse is ReverseProxy's ModifyResponse hook: the user's hook,
// if any, then room for trailers, as writeHeader does on the relay path.
func (b *Balancer) proxyResponse(res *http.Response) error {
	if b.o.modifyResponse != nil {
		if err := b.modifyResponse(res); err != nil {
			return err
		}
	}
	roomForTrailers(res)
	return nil
}

// modifyResponse runs the user's hook. If it panics, the response body is
// closed first, so that the attempt's accounting (in-flight counts,
// passive health) is settled, and the panic goes on.
func (b *Balancer) modifyResponse(resp *http.Response) (err error) {
	defer func() {
		if p := recover(); p != nil {
			resp.Body.Close()
			panic(p)
		}
	}()
	return b.o.modifyResponse(resp)
}
