// Package health decides whether a backend should get traffic, from probes
// of its own (active checks) and from the outcomes of real requests
// (passive checks).
//
// The two are small interfaces so that users can plug in their own:
//
//   - a [Checker] probes one target; [HTTPCheck], [TCPCheck] and
//     [GRPCCheck] (the standard gRPC health service) are built in. [Run]
//     drives a Checker on a [Schedule], applying the rise and fall
//     thresholds and jitter, until its context ends.
//   - an [Observer] judges a backend by the [Outcome] of every attempt sent
//     to it; [Passive] (nginx's max_fails/fail_timeout, with a true sliding
//     window) is built in.
//
// The package knows nothing of the balancer: it deals in target URLs and
// outcomes, and the balancer (package lb) owns every goroutine it starts.
package health

import (
	"context"
	"net/url"
	"time"
)

// Checker probes one target once. Check returns nil when the target passed.
// It must return when ctx ends; the error it returns then is not counted as
// a failed check. Check is called from one goroutine per target, but for
// many targets at once.
type Checker interface {
	Check(ctx context.Context, target *url.URL) error
}

// Schedule says how often a Checker runs and how its results become state.
// The zero value of each field means the default named beside it.
type Schedule struct {
	// Interval between the starts of two checks of one target. Default 5s.
	Interval time.Duration
	// Timeout of one check. Default 2s, and never more than Interval.
	Timeout time.Duration
	// Rise is the number of consecutive passes that bring a target that is
	// down back up. Default 2 (HAProxy's).
	Rise int
	// Fall is the number of consecutive failures that take a target that is
	// up down. Default 3 (HAProxy's).
	Fall int
	// Jitter spreads checks of many targets: each interval is lengthened
	// or shortened by up to this fraction of Interval, at random. Default
	// 0.1; a negative value turns jitter off.
	Jitter float64
	// StartDown makes a target count as down until it passes its first
	// check. By default a target counts as up until its first check, which
	// runs at once, and that first result decides its state on its own
	// (the thresholds apply from the second check on).
	StartDown bool
}

// Scheduler is implemented by Checkers that carry their own [Schedule], as
// [HTTPCheck] and [TCPCheck] do. A Checker that does not implement it runs
// on the default schedule.
type Scheduler interface {
	Schedule() Schedule
}

// Outcome is what the balancer learned from one attempt on a backend.
type Outcome struct {
	// Time the attempt ended.
	Time time.Time
	// Err is the error of the attempt: a connection error, a timeout, a
	// response body cut short, or a gRPC backend's Trailers-Only answer
	// with grpc-status 14 UNAVAILABLE (which says what a refused
	// connection says). Nil when any other response came back whole.
	Err error
	// Status is the response status, 0 if none arrived.
	Status int
	// Latency from the start of the attempt to its response headers (or to
	// its error).
	Latency time.Duration
	// Canceled is set when the client went away before the attempt ended.
	// Such an outcome says nothing about the backend and is never a
	// failure.
	Canceled bool
}

// Observer judges backends by the outcomes of real requests. Track is called
// once for each backend that joins a balancer; the Tracker it returns sees
// every attempt on that backend, from many goroutines at once.
type Observer interface {
	Track(target *url.URL) Tracker
}

// Tracker holds the passive-health state of one backend.
type Tracker interface {
	// Observe records o. It reports whether o counts as a failure and,
	// when the backend must be taken out of rotation, the time until
	// which it stays out (the zero Time when it stays in).
	Observe(o Outcome) (failed bool, ejectUntil time.Time)
	// Reset forgets every failure: the backend passed an active check, or
	// a probe request after an ejection succeeded.
	Reset()
}
