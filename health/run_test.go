package health

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// checkFunc is a Checker made of a function.
type checkFunc func(ctx context.Context, target *url.URL) error

func (f checkFunc) Check(ctx context.Context, target *url.URL) error { return f(ctx, target) }

var (
	testTarget = &url.URL{Scheme: "http", Host: "backend.test:8080"}
	errDown    = errors.New("down")
)

// runner runs Run in a goroutine of the current synctest bubble and keeps
// its reports.
type runner struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex // protects reports
	reports []Report
}

// start runs Run(ctx, c, testTarget, s, …) in a new goroutine. If stopAfter
// is positive, the report function cancels ctx after that many reports.
func start(c Checker, s Schedule, stopAfter int) *runner {
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		Run(ctx, c, testTarget, s, func(rep Report) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.reports = append(r.reports, rep)
			if len(r.reports) == stopAfter {
				cancel()
			}
		})
	}()
	return r
}

// stop cancels Run, waits for it to return and returns its reports.
func (r *runner) stop() []Report {
	r.cancel()
	<-r.done
	return r.wait()
}

// wait waits for Run to return and returns its reports.
func (r *runner) wait() []Report {
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reports
}

// transitions returns the reports of r that changed the state.
func transitions(reports []Report) []Report {
	var out []Report
	for _, r := range reports {
		if r.Changed {
			out = append(out, r)
		}
	}
	return out
}

func TestRunFirstCheckImmediate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		var calls []time.Time
		c := checkFunc(func(ctx context.Context, _ *url.URL) error {
			calls = append(calls, time.Now())
			return nil
		})
		r := start(c, Schedule{Interval: time.Hour, Jitter: -1}, 0)
		synctest.Wait()
		if len(calls) != 1 || !calls[0].Equal(t0) {
			t.Fatalf("checks before any time passed: %v; want one at %v", calls, t0)
		}
		reports := r.stop()
		if len(reports) != 1 {
			t.Fatalf("got %d reports; want 1", len(reports))
		}
		if got := reports[0]; !got.Up || got.Changed || got.Passes != 1 || got.Fails != 0 || got.Err != nil {
			t.Errorf("first report = %+v; want up, unchanged, 1 pass", got)
		}
	})
}

func TestRunThresholds(t *testing.T) {
	tests := []struct {
		name    string
		sched   Schedule
		results string // one letter per check: P passes, F fails
		want    string // state after each check: U up, D down; a '!' marks a change
	}{
		{"stays up", Schedule{}, "PPPP", "UUUU"},
		{"falls after exactly Fall", Schedule{}, "PFFFF", "UUUD!D"},
		{"first failure decides alone", Schedule{}, "FFP", "D!DD"},
		{"rises after exactly Rise", Schedule{}, "FPPP", "D!DU!U"},
		{"interleaved pass resets fails", Schedule{}, "PFFPFFPFF", "UUUUUUUUU"},
		{"interleaved fail resets passes", Schedule{}, "FPFPFPF", "D!DDDDDD"},
		{"fall 1 rise 1", Schedule{Rise: 1, Fall: 1}, "PFPF", "UD!U!D!"},
		{"fall 5 rise 4", Schedule{Rise: 4, Fall: 5}, "FFFFFFFPPPPP", "D!DDDDDDDDDU!U"},
		{"start down, one pass brings up", Schedule{StartDown: true}, "P", "U!"},
		{"start down, fails keep down", Schedule{StartDown: true}, "FFFP", "DDDU!"},
		{"start down, Rise applies once up", Schedule{StartDown: true}, "PFFFPP", "U!UUD!DU!"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var n int
				c := checkFunc(func(context.Context, *url.URL) error {
					defer func() { n++ }()
					if tt.results[n] == 'F' {
						return errDown
					}
					return nil
				})
				s := tt.sched
				s.Interval, s.Jitter = time.Second, -1
				reports := start(c, s, len(tt.results)).wait()

				var got strings.Builder
				passes, fails := 0, 0
				for i, r := range reports {
					got.WriteString(map[bool]string{true: "U", false: "D"}[r.Up])
					if r.Changed {
						got.WriteString("!")
					}
					if tt.results[i] == 'P' {
						passes, fails = passes+1, 0
					} else {
						passes, fails = 0, fails+1
					}
					if r.Passes != passes || r.Fails != fails {
						t.Errorf("check %d: streaks %d passes, %d fails; want %d, %d", i, r.Passes, r.Fails, passes, fails)
					}
					if (r.Err == nil) != (tt.results[i] == 'P') {
						t.Errorf("check %d: Err = %v; want result %c", i, r.Err, tt.results[i])
					}
				}
				if got.String() != tt.want {
					t.Errorf("results %s: got states %s; want %s", tt.results, got.String(), tt.want)
				}
			})
		})
	}
}

// flapping returns a Checker whose target passes for period, fails for
// period, and so on, from now on.
func flapping(period time.Duration) Checker {
	t0 := time.Now()
	return checkFunc(func(context.Context, *url.URL) error {
		if time.Since(t0)/period%2 == 1 {
			return errDown
		}
		return nil
	})
}

func TestRunFlapping(t *testing.T) {
	s := Schedule{Interval: 50 * time.Millisecond, Rise: 2, Fall: 3, Jitter: -1}

	t.Run("3 checks a phase", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			// Checks at 0, 50, …, 2950ms: 20 phases of 150ms with 3 equal
			// results each, enough for both thresholds: every phase but
			// the first flips the state.
			r := start(flapping(150*time.Millisecond), s, 60)
			reports := r.wait()
			changes := transitions(reports)
			if len(changes) != 19 {
				t.Fatalf("got %d transitions; want 19", len(changes))
			}
			for i, c := range changes {
				up := i%2 == 1
				if c.Up != up || (up && c.Passes != 2) || (!up && c.Fails != 3) {
					t.Errorf("transition %d = %+v; want up=%v after 2 passes or down after 3 fails", i, c, up)
				}
			}
		})
	})

	t.Run("2 checks a phase", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			// 2 failures in a row never reach Fall 3: the target stays up.
			reports := start(flapping(100*time.Millisecond), s, 60).wait()
			if changes := transitions(reports); len(changes) != 0 {
				t.Fatalf("got %d transitions (first %+v); want none", len(changes), changes[0])
			}
		})
	})

	t.Run("jittered", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := s
			s.Jitter = 0.1
			reports := start(flapping(150*time.Millisecond), s, 200).wait()
			changes := transitions(reports)
			// All checks of one 150ms phase give one result, so a phase
			// brings at most one transition, and the first none.
			phases := int(reports[len(reports)-1].Time.Sub(reports[0].Time)/(150*time.Millisecond)) + 1
			if len(changes) == 0 || len(changes) > phases-1 {
				t.Errorf("got %d transitions in %d phases; want 1 to %d", len(changes), phases, phases-1)
			}
			for i, c := range changes {
				if c.Up != (i%2 == 1) || (c.Up && c.Passes != 2) || (!c.Up && c.Fails != 3) {
					t.Errorf("transition %d = %+v; want alternating, after 2 passes or 3 fails", i, c)
				}
			}
		})
	})
}

func TestRunJitter(t *testing.T) {
	const interval = 100 * time.Millisecond
	tests := []struct {
		jitter   float64
		min, max time.Duration
	}{
		{-1, interval, interval},
		{0, 90 * time.Millisecond, 110 * time.Millisecond}, // default 0.1
		{0.5, 50 * time.Millisecond, 150 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.jitter), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const n = 500
				reports := start(checkFunc(func(context.Context, *url.URL) error { return nil }),
					Schedule{Interval: interval, Jitter: tt.jitter}, n).wait()
				lo, hi := time.Duration(1<<62), time.Duration(0)
				for i := 1; i < len(reports); i++ {
					gap := reports[i].Time.Sub(reports[i-1].Time)
					lo, hi = min(lo, gap), max(hi, gap)
				}
				if lo < tt.min || hi > tt.max {
					t.Errorf("gaps between checks from %v to %v; want within [%v, %v]", lo, hi, tt.min, tt.max)
				}
				// The spread is used: the extremes come within 20% of
				// the bounds, and the mean stays near the interval.
				spread := tt.max - tt.min
				if lo > tt.min+spread/5 || hi < tt.max-spread/5 {
					t.Errorf("gaps between checks from %v to %v; want spread over [%v, %v]", lo, hi, tt.min, tt.max)
				}
				mean := reports[n-1].Time.Sub(reports[0].Time) / (n - 1)
				if d := mean - interval; d < -interval/20 || d > interval/20 {
					t.Errorf("mean gap %v; want %v ± 5%%", mean, interval)
				}
			})
		})
	}
}

func TestRunIntervalBetweenStarts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		var starts []time.Duration
		took := []time.Duration{30 * time.Millisecond, 150 * time.Millisecond, 0, 0}
		c := checkFunc(func(context.Context, *url.URL) error {
			starts = append(starts, time.Since(t0))
			time.Sleep(took[len(starts)-1]) // ignores ctx, overrunning the interval
			return nil
		})
		reports := start(c, Schedule{Interval: 100 * time.Millisecond, Jitter: -1}, len(took)).wait()
		want := []time.Duration{0, 100 * time.Millisecond, 250 * time.Millisecond, 350 * time.Millisecond}
		if fmt.Sprint(starts) != fmt.Sprint(want) {
			t.Errorf("checks started at %v; want %v", starts, want)
		}
		if reports[1].Duration != 150*time.Millisecond || !reports[1].Time.Equal(t0.Add(250*time.Millisecond)) {
			t.Errorf("second report: Time %v, Duration %v; want %v, 150ms", reports[1].Time.Sub(t0), reports[1].Duration, 250*time.Millisecond)
		}
	})
}

func TestRunTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		c := checkFunc(func(ctx context.Context, _ *url.URL) error {
			if d, ok := ctx.Deadline(); !ok || d.Sub(t0)%time.Second != 300*time.Millisecond {
				t.Errorf("check context deadline %v, %v; want 300ms after the start", d.Sub(t0), ok)
			}
			<-ctx.Done()
			return ctx.Err()
		})
		reports := start(c, Schedule{Interval: time.Second, Timeout: 300 * time.Millisecond, Jitter: -1}, 2).wait()
		for i, r := range reports {
			if !errors.Is(r.Err, context.DeadlineExceeded) || r.Duration != 300*time.Millisecond {
				t.Errorf("report %d: Err %v, Duration %v; want deadline exceeded after 300ms", i, r.Err, r.Duration)
			}
		}
		if got := reports[1].Time.Sub(t0); got != 1300*time.Millisecond {
			t.Errorf("second check ended at %v; want 1.3s", got)
		}
	})

	t.Run("default capped at interval", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c := checkFunc(func(ctx context.Context, _ *url.URL) error {
				<-ctx.Done()
				return ctx.Err()
			})
			reports := start(c, Schedule{Interval: time.Second}, 1).wait()
			if reports[0].Duration != time.Second {
				t.Errorf("check timed out after %v; want 1s", reports[0].Duration)
			}
		})
	})
}

func TestRunCancel(t *testing.T) {
	block := checkFunc(func(ctx context.Context, _ *url.URL) error {
		<-ctx.Done()
		return ctx.Err()
	})
	ignore := checkFunc(func(ctx context.Context, _ *url.URL) error {
		time.Sleep(time.Second) // ignores ctx, then passes
		return nil
	})
	tests := []struct {
		name     string
		c        Checker
		cancelAt time.Duration
		wantAt   time.Duration // when Run returns
	}{
		{"during a check", block, 10 * time.Millisecond, 10 * time.Millisecond},
		{"during a check that ignores ctx", ignore, 10 * time.Millisecond, time.Second},
		{"between checks", ignore, 1500 * time.Millisecond, 1500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				t0 := time.Now()
				r := start(tt.c, Schedule{Interval: 2 * time.Second, Timeout: 2 * time.Second, Jitter: -1}, 0)
				time.Sleep(tt.cancelAt)
				reports := r.stop()
				if got := time.Since(t0); got != tt.wantAt {
					t.Errorf("Run returned at %v; want %v", got, tt.wantAt)
				}
				for _, rep := range reports {
					if rep.Err != nil || rep.Time.Sub(t0) >= tt.cancelAt {
						t.Errorf("got report %+v at %v; want only passes before the cancel", rep, rep.Time.Sub(t0))
					}
				}
			})
		})
	}

	t.Run("before the start", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		Run(ctx, checkFunc(func(context.Context, *url.URL) error {
			t.Error("Check called with ctx already done")
			return nil
		}), testTarget, Schedule{}, func(r Report) { t.Errorf("got report %+v", r) })
	})
}

func TestRunPanic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n int
		c := checkFunc(func(context.Context, *url.URL) error {
			n++
			if n == 2 {
				panic("boom")
			}
			return nil
		})
		reports := start(c, Schedule{Interval: time.Second, Rise: 1, Fall: 1, Jitter: -1}, 3).wait()
		if len(reports) != 3 {
			t.Fatalf("got %d reports; want 3", len(reports))
		}
		r := reports[1]
		if !errors.Is(r.Err, errPanic) || !strings.Contains(r.Err.Error(), "boom") || r.Up || !r.Changed {
			t.Errorf("report of panicking check = %+v; want failed with the panic value, down", r)
		}
		if !reports[2].Up {
			t.Errorf("report after the panic = %+v; want up again", reports[2])
		}
	})
}

func TestRunMisuse(t *testing.T) {
	c := checkFunc(func(context.Context, *url.URL) error { return nil })
	tests := []struct {
		name   string
		c      Checker
		target *url.URL
		s      Schedule
		want   string
	}{
		{"nil Checker", nil, testTarget, Schedule{}, "health: Run with nil Checker"},
		{"nil target", c, nil, Schedule{}, "health: Run with nil target"},
		{"invalid schedule", c, testTarget, Schedule{Rise: -1}, "health: negative Rise -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if got := recover(); got != tt.want {
					t.Errorf("panic %v; want %q", got, tt.want)
				}
			}()
			Run(context.Background(), tt.c, tt.target, tt.s, nil)
		})
	}
}
