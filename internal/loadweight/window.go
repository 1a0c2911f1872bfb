package loadweight

import (
	"math"
	"sync"
	"time"
)

// minWeight is the weight of a backend measured to fail every request: a
// valid weight (so that the backend is weighed, not given the mean), as
// small as weights get.
const minWeight = 1e-9

// Window is one backend's weight as its reports or measurements make it,
// with gRPC's rules for when it may be used (grpc-go
// balancer/weightedroundrobin endpointWeight.weight): not before Blackout
// has passed since the first report of an unbroken run, not after
// Expiration without a report. It is safe for concurrent use. Make one with
// [Group.NewWindow].
type Window struct {
	cfg *Config // the Group's, with defaults filled in

	mu sync.Mutex // guards the fields below
	// last is the last valid report (in Measured mode, the measurement as
	// of lastUpdated), and weight its weight.
	last   Load
	weight float64
	// nonEmptySince is when the current run of reports began; zero after
	// an expiry or a Reset, so that the blackout starts again.
	nonEmptySince time.Time
	lastUpdated   time.Time // time of the last valid report; zero if none

	// Measured mode: sums over the attempts seen, each decayed by
	// exp(-age/cfg.Window), as of at.
	n, fails, okLatency float64 // attempts, failed attempts, seconds spent by successful ones
	at                  time.Time
}

// Report records a load report received at now and reports whether it was
// used: one with qps ≤ 0 or utilization ≤ 0 is ignored (gRFC A58), and so
// is every report in Measured mode, whose weights come from Observe.
func (w *Window) Report(l Load, now time.Time) bool {
	if w.cfg.Measured {
		return false
	}
	wt := l.Weight(w.cfg.Penalty)
	if wt == 0 {
		return false
	}
	w.mu.Lock()
	w.last, w.weight = l, wt
	w.updatedLocked(now)
	w.mu.Unlock()
	return true
}

// updatedLocked notes a valid report or measurement at now.
func (w *Window) updatedLocked(now time.Time) {
	w.lastUpdated = now
	if w.nonEmptySince.IsZero() {
		w.nonEmptySince = now
	}
}

// Observe records one attempt that ended at now, in Measured mode: latency
// is its time to the response headers (or to its error) and failed tells
// whether it counted as a failure. Outside Measured mode it does nothing.
//
// The measurement is a moving average over cfg.Window: every attempt counts
// with weight exp(-age/Window). From it:
//
//	qps         = attempts / Window
//	eps         = failed attempts / Window
//	latency     = mean latency of the successful attempts
//	utilization = qps × latency (Little's law: requests in flight)
//
// and the weight is successful requests per second per request in flight,
// with the failures' share weighted by the penalty:
//
//	e = eps/qps;  weight = (1−e) / (latency × (1 − e + penalty·e))
//
// At penalty 1 this is (qps−eps)/utilization; with no failures it is
// 1/latency whatever the penalty, so a backend twice as slow gets half the
// weight. A backend whose every attempt failed gets the least weight there
// is. Failed attempts' latencies are left out, so that fast failures do not
// make a backend look fast.
func (w *Window) Observe(latency time.Duration, failed bool, now time.Time) {
	if !w.cfg.Measured {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.decayLocked(now)
	w.n++
	if failed {
		w.fails++
	} else {
		w.okLatency += max(latency, 0).Seconds()
	}
	w.measureLocked()
	w.updatedLocked(now)
}

// decayLocked ages the sums to now.
func (w *Window) decayLocked(now time.Time) {
	if !w.at.IsZero() && now.After(w.at) {
		f := math.Exp(-float64(now.Sub(w.at)) / float64(w.cfg.Window))
		w.n *= f
		w.fails *= f
		w.okLatency *= f
	}
	if w.at.IsZero() || now.After(w.at) {
		w.at = now
	}
}

// measureLocked sets last and weight from the sums.
func (w *Window) measureLocked() {
	tau := w.cfg.Window.Seconds()
	ok := w.n - w.fails
	l := Load{QPS: w.n / tau, EPS: w.fails / tau}
	if ok <= w.n*1e-12 {
		w.last, w.weight = l, minWeight
		return
	}
	// A latency of 0 (a clock that did not move) counts as 1 ns, so that
	// weights stay finite.
	lat := max(w.okLatency/ok, 1e-9)
	l.CPU = l.QPS * lat
	w.last = l
	e := w.fails / w.n
	p := w.cfg.Penalty
	w.weight = max((1-e)/(lat*(1-e+p*e)), minWeight)
}

// Weight returns the weight to use at now, or 0 if there is none: no valid
// report yet, the blackout is not over, or the last report expired. An
// expiry restarts the blackout for the reports that follow.
func (w *Window) Weight(now time.Time) float64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.weightLocked(now)
}

func (w *Window) weightLocked(now time.Time) float64 {
	if w.lastUpdated.IsZero() {
		return 0
	}
	if now.Sub(w.lastUpdated) >= w.cfg.Expiration {
		w.nonEmptySince = time.Time{}
		return 0
	}
	if w.cfg.Blackout > 0 && (w.nonEmptySince.IsZero() || now.Sub(w.nonEmptySince) < w.cfg.Blackout) {
		return 0
	}
	return w.weight
}

// Reset restarts the blackout, as gRPC does when a backend reconnects: the
// reports of a backend that was down describe a backend that no longer
// exists. The last report stays for [Window.State].
func (w *Window) Reset() {
	w.mu.Lock()
	w.nonEmptySince = time.Time{}
	w.n, w.fails, w.okLatency, w.at = 0, 0, 0, time.Time{}
	w.mu.Unlock()
}

// State is what a Window knows at a moment, for statistics.
type State struct {
	// Weight is the weight in use (0: none; see [Window.Weight]).
	Weight float64
	// Last is the last valid report, or in Measured mode the last
	// measurement (QPS, EPS, and utilization as CPU); At is its time, zero
	// if there was none.
	Last Load
	At   time.Time
}

// State returns the window's state at now.
func (w *Window) State(now time.Time) State {
	w.mu.Lock()
	defer w.mu.Unlock()
	return State{Weight: w.weightLocked(now), Last: w.last, At: w.lastUpdated}
}
