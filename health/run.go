package health

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"time"
)

// Report is the result of one check, as [Run] hands it to its report
// function after every check, whether or not the check changed the state.
type Report struct {
	// Time the check ended.
	Time time.Time
	// Err is why the check failed; nil when it passed.
	Err error
	// Duration of the check.
	Duration time.Duration
	// Up is the state of the target after this check.
	Up bool
	// Changed is set when this check changed Up.
	Changed bool
	// Passes and Fails are the current streaks of consecutive passed and
	// failed checks, this one included; one of them is always 0.
	Passes, Fails int
}

// errPanic is wrapped by the error that [Run] reports for a Check that
// panicked.
var errPanic = errors.New("health: check panicked")

// Run probes target with c on schedule s and calls report (if not nil)
// after every check, until ctx ends. It blocks until then and starts no
// goroutine: the caller runs one Run per target, in a goroutine it owns.
// report is called from that goroutine, and the next check waits for it.
//
// Run uses s as given, with [Schedule.WithDefaults] applied; a caller whose
// Checker is a [Scheduler] passes its Schedule. Run panics if c is nil, if
// target is nil or if s is invalid ([Schedule.Validate]), since those are
// mistakes in the calling code.
//
// The first check runs at once. The next ones start Interval after the
// start of the one before, lengthened or shortened at random by up to
// Jitter·Interval; a check that overruns that is followed at once by the
// next. Each check gets a context that ends after Timeout, and Run waits
// for Check to return: a Checker that ignores its context delays Run.
//
// The target starts up, and its first result decides its state on its own.
// From then on a target that is up goes down after Fall consecutive failed
// checks, and a target that is down comes up after Rise consecutive passed
// ones; a pass resets the streak of failures and a failure the streak of
// passes. With s.StartDown the target starts down, and until it first
// comes up a single passed check is enough to bring it up (as Envoy does
// at startup); from then on Rise applies.
//
// A Check that returns after ctx ended is neither counted nor reported, so
// stopping Run never records a failure. A Check that panics counts as
// failed, with an error that says so, and Run goes on.
func Run(ctx context.Context, c Checker, target *url.URL, s Schedule, report func(Report)) {
	if c == nil {
		panic("health: Run with nil Checker")
	}
	if target == nil {
		panic("health: Run with nil target")
	}
	if err := s.Validate(); err != nil {
		panic(err.Error())
	}
	s = s.WithDefaults()

	st := streaks{up: !s.StartDown, proven: !s.StartDown, first: true}
	timer := time.NewTimer(0) // the first check runs at once
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if ctx.Err() != nil { // both were ready, and select chose the timer
			return
		}
		start := time.Now()
		err := check(ctx, c, target, s.Timeout)
		end := time.Now()
		if ctx.Err() != nil {
			return
		}
		changed := st.record(err == nil, s.Rise, s.Fall)
		if report != nil {
			report(Report{
				Time:     end,
				Err:      err,
				Duration: end.Sub(start),
				Up:       st.up,
				Changed:  changed,
				Passes:   st.passes,
				Fails:    st.fails,
			})
		}
		timer.Reset(max(0, interval(s)-time.Since(start)))
	}
}

// check runs one check with a timeout and turns a panic into an error.
func check(ctx context.Context, c Checker, target *url.URL, timeout time.Duration) (err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%w: %v", errPanic, v)
		}
	}()
	return c.Check(ctx, target)
}

// interval returns the time from the start of one check to the start of
// the next: s.Interval, jittered. s has its defaults.
func interval(s Schedule) time.Duration {
	if s.Jitter <= 0 {
		return s.Interval
	}
	spread := s.Jitter * float64(s.Interval)
	return s.Interval + time.Duration((2*rand.Float64()-1)*spread)
}

// streaks turns check results into an up or down state.
type streaks struct {
	up     bool // the current state
	proven bool // up at some time, or assumed up from the start
	first  bool // no result yet
	passes int  // consecutive passes, this one included
	fails  int  // consecutive failures, this one included
}

// record counts one result and reports whether it changed st.up.
func (st *streaks) record(pass bool, rise, fall int) (changed bool) {
	if pass {
		st.passes++
		st.fails = 0
	} else {
		st.fails++
		st.passes = 0
	}
	was := st.up
	switch {
	case st.first && st.proven: // assumed up: the first result decides
		st.up = pass
	case !st.proven: // StartDown, never up yet: one pass suffices
		st.up = pass
	case st.up && st.fails >= fall:
		st.up = false
	case !st.up && st.passes >= rise:
		st.up = true
	}
	st.first = false
	if st.up {
		st.proven = true
	}
	return st.up != was
}
