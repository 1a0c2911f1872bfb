// Package sim is a deterministic discrete-event simulation of how well the
// strategies of package strategy spread load: it drives the real pickers
// (Pick, and Done for those that are Observers) with simulated time, so its
// results depend on the seed only, never on the machine.
//
// The model (Run): an open loop of Poisson arrivals at a fixed rate goes
// through one picker to N backends. Each backend is a single FIFO server
// (one request at a time, the rest wait in its queue) with exponential
// service times; one backend is Factor times slower than the others. The
// rate is Load × the backends' total capacity. A request's latency is its
// queueing time plus its service time; a picker that is an Observer is told
// Done(i, Success) when the request completes, so least connections sees
// the in-flight counts a balancer would show it.
//
// Service times use common random numbers: request k has the same
// arrival time and the same Exp(1) draw under every strategy, scaled by
// the mean of the backend it is sent to.
//
// The other workloads (workloads.go) use the same engine: a backend that
// turns slow mid-run, backends of unequal capacity behind equal weights,
// Zipf-distributed hot keys over a hash ring, and many independent
// balancer instances in front of one set of backends (the herd).
//
// HashBalance measures the consistent-hash ring instead (nginx's ketama
// ring, ngx_http_upstream_update_chash): the load spread of a million keys
// and how many keys move when a backend is added or removed, which
// consistent hashing (Karger et al., STOC 1997) keeps to the share of the
// backend added or removed.
package sim

import (
	"fmt"
	"math"
	"slices"

	"github.com/tinylb/lb/strategy"
)

// Config describes one simulated load of the slow-backend workloads.
type Config struct {
	Backends int     // number of backends (10)
	Slow     int     // index of the slow backend (0)
	MeanMS   float64 // mean service time of a normal backend, ms (1)
	Factor   float64 // the slow backend's mean is Factor × MeanMS (10)
	Load     float64 // arrival rate as a fraction of the total capacity (0.7)
	Requests int     // requests measured
	Warmup   int     // requests sent before the measured ones, not counted
	Seed     uint64
	// SlowAt is the simulated time (s) from which the slow backend is
	// slow: requests arriving before it are served at MeanMS. 0: slow from
	// the start. Rate and Capacity count it slow either way.
	SlowAt float64 `json:",omitempty"`
	// NeverSlow keeps the slow backend at MeanMS all run (and Rate
	// unchanged): the healthy baseline of the same arrivals.
	NeverSlow bool `json:",omitempty"`
}

// Default is the scenario: 10 backends, one 10× slower, 70% load.
func Default() Config {
	return Config{Backends: 10, Slow: 0, MeanMS: 1, Factor: 10, Load: 0.7, Requests: 200_000, Warmup: 20_000, Seed: 1}
}

// Capacity is the total service rate of the backends in requests per
// second.
func (c Config) Capacity() float64 {
	return float64(c.Backends-1)*1000/c.MeanMS + 1000/(c.MeanMS*c.Factor)
}

// Rate is the arrival rate in requests per second.
func (c Config) Rate() float64 { return c.Load * c.Capacity() }

// workload returns the engine's description of c.
func (c Config) workload() workload {
	w := workload{rate: c.Rate(), instances: 1, requests: c.Requests, warmup: c.Warmup, seed: c.Seed}
	for i := range c.Backends {
		b := backendSpec{mean: c.MeanMS / 1000, workers: 1, slowAt: math.Inf(1), slowBy: 1}
		if i == c.Slow && !c.NeverSlow {
			if c.SlowAt > 0 {
				b.slowAt, b.slowBy = c.SlowAt, c.Factor
			} else {
				b.mean *= c.Factor
			}
		}
		w.backends = append(w.backends, b)
	}
	return w
}

// Policies returns the strategies of [Lineup], with equal weights (what a
// user who does not know the slow backend configures), and the weighted
// ones again with weights proportional to capacity, and consistent hashing
// with a fresh random key per request.
func Policies(c Config) []Policy {
	capW := make([]int, c.Backends)
	for i := range capW {
		capW[i] = int(math.Round(c.Factor))
	}
	capW[c.Slow] = 1
	ps := Lineup()
	ps = append(ps,
		Policy{Name: "swrr-capw", New: func(Env) strategy.Strategy { return strategy.NewSmoothWeighted() }, Weights: capW,
			Note: fmt.Sprintf("smooth weighted RR, weights ∝ capacity (slow 1, others %d)", capW[(c.Slow+1)%c.Backends])},
		Policy{Name: "leastconn-capw", New: func(Env) strategy.Strategy { return strategy.NewLeastConn() }, Weights: capW,
			Note: "least connections, weights ∝ capacity"},
		Policy{Name: "hash", New: func(Env) strategy.Strategy { return strategy.NewConsistentHash(keyOf) }, Keyed: true,
			Note: "consistent hash, a random key per request"},
	)
	return ps
}

// Result is the outcome of one policy under one Config.
type Result struct {
	Policy    string
	Note      string
	Load      float64
	Rate      float64 // arrivals per second
	Requests  int     // measured
	SlowShare float64 // fraction of measured requests sent to the slow backend
	// Latency percentiles of the measured requests, ms.
	P50, P90, P95, P99, P999, Mean, Max float64
	// SlowUtil is the slow backend's offered load: its arrival rate ×
	// its mean service time. Above 1 its queue grows without bound and
	// the latencies grow with the length of the run.
	SlowUtil float64
	// MaxQueue is the longest queue (in flight, including the one in
	// service) any backend had; SlowMaxQueue the slow backend's.
	MaxQueue, SlowMaxQueue int
	// Shares per backend, measured requests.
	Shares []float64
	// PerBackend has the latency percentiles of the requests each backend
	// served.
	PerBackend []BackendStat `json:",omitempty"`
	// Imbalance is the mean, over the measured arrivals, of the most
	// requests in flight at one backend ÷ the mean over the backends.
	Imbalance float64
	// After sums up the requests that arrived once the slow backend had
	// turned slow (Config.SlowAt > 0), Before those that arrived earlier.
	Before, After *Phase `json:",omitempty"`
	// SimSeconds is the simulated time of the measured arrivals.
	SimSeconds float64
}

// BackendStat is one backend's part of a Result.
type BackendStat struct {
	Share, P50, P99 float64
}

// Phase is a stretch of a run: its requests' latency percentiles (ms) and
// the share of them sent to the slow backend.
type Phase struct {
	Requests                 int
	P50, P90, P95, P99, P999 float64
	SlowShare                float64
}

// Run simulates p under c and returns its result. It is deterministic.
func Run(c Config, p Policy) Result {
	e := run(c.workload(), p)
	r := e.result(p)
	r.Load = c.Load
	r.SlowShare = r.Shares[c.Slow]
	r.SlowUtil = r.SlowShare * e.w.rate * c.MeanMS * c.Factor / 1000
	r.SlowMaxQueue = e.srv[c.Slow].maxQ
	if c.SlowAt > 0 {
		r.Before = e.phase(c.Slow, func(s sample) bool { return s.arrive < c.SlowAt })
		r.After = e.phase(c.Slow, func(s sample) bool { return s.arrive >= c.SlowAt })
	}
	return r
}

// result sums up the measured requests of a run.
func (e *engine) result(p Policy) Result {
	n := len(e.srv)
	r := Result{Policy: p.Name, Note: p.Note, Rate: e.w.rate, Requests: len(e.lat), SimSeconds: e.lastT - e.firstT}
	r.Shares = make([]float64, n)
	for i, k := range e.counts {
		r.Shares[i] = float64(k) / float64(e.w.requests)
	}
	per := make([][]float64, n)
	lat := make([]float64, len(e.lat))
	var sum float64
	for k, s := range e.lat {
		lat[k] = s.ms
		sum += s.ms
		per[s.backend] = append(per[s.backend], s.ms)
	}
	for i := range e.srv {
		r.MaxQueue = max(r.MaxQueue, e.srv[i].maxQ)
		slices.Sort(per[i])
		b := BackendStat{Share: r.Shares[i]}
		if len(per[i]) > 0 { // JSON has no NaN
			b.P50, b.P99 = quantile(per[i], 0.5), quantile(per[i], 0.99)
		}
		r.PerBackend = append(r.PerBackend, b)
	}
	slices.Sort(lat)
	r.Mean = sum / float64(len(lat))
	r.P50, r.P90, r.P95 = quantile(lat, 0.5), quantile(lat, 0.9), quantile(lat, 0.95)
	r.P99, r.P999 = quantile(lat, 0.99), quantile(lat, 0.999)
	r.Max = lat[len(lat)-1]
	if e.imbN > 0 {
		r.Imbalance = e.imbSum / float64(e.imbN)
	}
	return r
}

// phase sums up the measured requests that keep selects.
func (e *engine) phase(slow int, keep func(sample) bool) *Phase {
	var lat []float64
	onSlow := 0
	for _, s := range e.lat {
		if keep(s) {
			lat = append(lat, s.ms)
			if int(s.backend) == slow {
				onSlow++
			}
		}
	}
	slices.Sort(lat)
	ph := &Phase{Requests: len(lat), P50: quantile(lat, 0.5), P90: quantile(lat, 0.9), P95: quantile(lat, 0.95),
		P99: quantile(lat, 0.99), P999: quantile(lat, 0.999)}
	if len(lat) > 0 {
		ph.SlowShare = float64(onSlow) / float64(len(lat))
	}
	return ph
}

// quantile returns the q-quantile of sorted xs (nearest rank).
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	k := int(math.Ceil(q*float64(len(xs)))) - 1
	return xs[min(max(k, 0), len(xs)-1)]
}
