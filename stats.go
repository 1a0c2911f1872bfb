package lb

import (
	"errors"
	"expvar"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tinylb/lb/internal/effweight"
	"github.com/tinylb/lb/internal/loadweight"
)

// LatencyBuckets are the upper bounds of the latency histogram kept per
// backend (time to response headers); a last bucket counts the rest.
var LatencyBuckets = [...]time.Duration{
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second,
}

// ewmaAlpha is the weight of a new sample in the latency moving average.
const ewmaAlpha = 0.2

// latencyStats is a lock-free latency record: an exponentially weighted
// moving average and a histogram, each updated with atomics.
type latencyStats struct {
	ewma    atomic.Uint64 // float64 bits, nanoseconds
	buckets [len(LatencyBuckets) + 1]atomic.Int64
	sum     atomic.Int64 // nanoseconds
}

func (l *latencyStats) observe(d time.Duration) {
	i := 0
	for i < len(LatencyBuckets) && d > LatencyBuckets[i] {
		i++
	}
	l.buckets[i].Add(1)
	l.sum.Add(int64(d))
	for {
		old := l.ewma.Load()
		prev := math.Float64frombits(old)
		next := float64(d)
		if old != 0 {
			next = prev + ewmaAlpha*(float64(d)-prev)
		}
		if l.ewma.CompareAndSwap(old, math.Float64bits(next)) {
			return
		}
	}
}

// BackendStats is a backend's state and counters as one balancer sees them.
type BackendStats struct {
	URL    string
	Weight int // configured weight
	// EffectiveWeight is the weight in effect now, in configured units: less
	// than Weight while slow start ramps the backend up or (with smooth
	// weighted round robin) after failures lowered it; 0 once the balancer
	// is closed.
	EffectiveWeight float64
	Backup          bool
	State           State
	Reason          string // why the backend is in State, when known
	Active          int64  // attempts in flight
	Requests        int64  // attempts started
	Failures        int64  // attempts that counted as failures
	Retries         int64  // attempts that were retries of an earlier one
	// StickyHits counts requests that [WithStickyCookie]'s cookie sent
	// here without asking the strategy (included in Requests).
	StickyHits int64
	// LatencyEWMA is the moving average of the time to response headers.
	LatencyEWMA time.Duration
	// LatencyHistogram counts attempts by time to response headers: entry i
	// counts those ≤ LatencyBuckets[i] (and above the bucket before); the
	// last entry counts the rest.
	LatencyHistogram []int64
	// LatencySum is the total of all recorded latencies, for averages
	// and Prometheus histograms.
	LatencySum     time.Duration
	LastCheck      time.Time // time of the last active check; zero if none
	LastCheckError string    // error of the last active check; "" if it passed

	// The fields below are set with [WithLoadReports] only.

	// LoadFactor is what the backend's load reports multiply Weight by
	// (EffectiveWeight includes it): 1 while no report counts. 0 without
	// WithLoadReports.
	LoadFactor float64
	// DynamicWeight is the weight the reports give the backend now, gRFC
	// A58's qps / (utilization + eps/qps × penalty); 0 while none counts
	// (no report yet, in the blackout, or expired).
	DynamicWeight float64
	// LoadQPS, LoadUtilization and LoadEPS are the last valid report (in
	// Measured mode, the last measurement: utilization is requests in
	// flight), and LoadReportTime when it came; all zero if none has.
	LoadQPS, LoadUtilization, LoadEPS float64
	LoadReportTime                    time.Time
}

// Stats is a snapshot of a balancer's state and counters.
type Stats struct {
	Time     time.Time
	Backends []BackendStats
	// Requests, Failures, Retries and Active are the sums over backends.
	Requests, Failures, Retries, Active int64
	// Unavailable counts requests answered 503 because no backend could
	// take them; Failed those answered 502 or 504.
	Unavailable, Failed int64
	// RetriesDenied counts retries the retry budget refused.
	RetriesDenied int64
	// StickyHits is the sum over backends. StickyMisses counts requests
	// whose sticky cookie ([WithStickyCookie]) was not honoured: it named
	// no backend (tampered, another secret's, a removed backend's) or one
	// that could not take the request. StickyRewrites counts answers that
	// replaced a cookie the client sent, after a miss or a retry.
	StickyHits, StickyMisses, StickyRewrites int64
	// Panic is set while panic mode balances over unhealthy backends.
	Panic bool
	// EventsDropped counts events the event function was too slow to take.
	EventsDropped int64
	// Unbuffered counts requests whose body found no room in the body
	// memory ([WithBodyMemory]): they streamed without a copy, and were
	// not retried once sent.
	Unbuffered int64
	// BodyMemory is the bytes of request bodies held now, for request
	// buffering and replays.
	BodyMemory int64
}

// balancerStats are the per-balancer counters of answers the balancer made
// itself (the rare, failed ones).
type balancerStats struct {
	unavailable  atomic.Int64
	failed       atomic.Int64
	budgetDenied atomic.Int64

	stickyMisses   atomic.Int64
	stickyRewrites atomic.Int64
}

// Stats returns a snapshot of the balancer's backends and counters. It is
// cheap, and takes the pool's read lock only to copy the health reasons.
//
// After [Balancer.Close], Stats goes on listing the pool's members, in the
// pool's order and with their counters, each in [StateClosed] with the
// reason "balancer closed" and an EffectiveWeight of 0, so that a status
// page or a last scrape still shows what the balancer served.
func (b *Balancer) Stats() Stats {
	s := b.snapshot()
	st := Stats{
		Time:           b.now(),
		Unavailable:    b.stats.unavailable.Load(),
		Failed:         b.stats.failed.Load(),
		RetriesDenied:  b.stats.budgetDenied.Load(),
		StickyMisses:   b.stats.stickyMisses.Load(),
		StickyRewrites: b.stats.stickyRewrites.Load(),
		Panic:          s.panicking,
		EventsDropped:  b.events.droppedCount(),
		Unbuffered:     b.mem.unbuffered.Load(),
		BodyMemory:     b.mem.held.Load(),
	}
	b.pool.mu.RLock()
	backends := s.backends
	if s.closed {
		// A closed balancer publishes no snapshot of its members any
		// more: read them from the pool, which it no longer follows.
		backends = slices.Clone(b.pool.backends)
	}
	st.Backends = make([]BackendStats, len(backends))
	for i, be := range backends {
		bs := &st.Backends[i]
		bs.URL = be.key
		bs.Weight = be.Weight()
		bs.Backup = be.Backup()
		if s.closed {
			bs.State, bs.Reason = StateClosed, "balancer closed"
		} else {
			bs.State, bs.Reason = s.states[i], be.reason
		}
		bs.LastCheck = be.lastCheck
		if be.lastCheckErr != nil {
			bs.LastCheckError = be.lastCheckErr.Error()
		}
	}
	b.pool.mu.RUnlock()
	for i, be := range backends {
		bs := &st.Backends[i]
		if !s.closed {
			bs.EffectiveWeight = float64(s.weights[i]) / float64(s.scale)
			if w, ok := effweight.Of(s.picker, i); ok {
				bs.EffectiveWeight = float64(w) / float64(s.scale)
			}
		}
		if s.windows != nil && s.windows[i] != nil {
			ls := s.windows[i].State(st.Time)
			bs.LoadFactor = float64(s.factors[i]) / loadweight.Scale
			bs.DynamicWeight = ls.Weight
			bs.LoadQPS, bs.LoadUtilization, bs.LoadEPS = ls.Last.QPS, ls.Last.Utilization(), ls.Last.EPS
			bs.LoadReportTime = ls.At
		}
		bs.Active = be.active.Load()
		bs.Requests = be.stats.requests.Load()
		bs.Failures = be.stats.failures.Load()
		bs.Retries = be.stats.retries.Load()
		bs.StickyHits = be.stats.sticky.Load()
		bs.LatencyEWMA = time.Duration(math.Float64frombits(be.stats.latency.ewma.Load()))
		bs.LatencySum = time.Duration(be.stats.latency.sum.Load())
		bs.LatencyHistogram = make([]int64, len(be.stats.latency.buckets))
		for j := range be.stats.latency.buckets {
			bs.LatencyHistogram[j] = be.stats.latency.buckets[j].Load()
		}
		st.Requests += bs.Requests
		st.Failures += bs.Failures
		st.Retries += bs.Retries
		st.StickyHits += bs.StickyHits
		st.Active += bs.Active
	}
	return st
}

// expvarMu makes PublishExpvar's look-up and publish one step, since
// [expvar.Publish] panics on a name that is taken.
var expvarMu sync.Mutex

// PublishExpvar publishes the balancer's [Stats] as the expvar variable
// name, served as JSON by expvar's /debug/vars handler and read afresh on
// every request. It fails if name is empty or taken (expvar names are
// process-wide and cannot be unpublished), also when other balancers
// publish at the same time.
func (b *Balancer) PublishExpvar(name string) error {
	if name == "" {
		return errors.New("lb: PublishExpvar: empty expvar name")
	}
	expvarMu.Lock()
	defer expvarMu.Unlock()
	if expvar.Get(name) != nil {
		return fmt.Errorf("lb: expvar %q is already published", name)
	}
	expvar.Publish(name, expvar.Func(func() any { return b.Stats() }))
	return nil
}
