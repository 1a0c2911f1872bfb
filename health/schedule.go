package health

import (
	"fmt"
	"time"
)

// Defaults of a [Schedule], applied by [Schedule.WithDefaults].
const (
	defaultInterval = 5 * time.Second
	defaultTimeout  = 2 * time.Second
	defaultRise     = 2
	defaultFall     = 3
	defaultJitter   = 0.1
)

// WithDefaults returns s with every zero field set to its default: Interval
// 5s, Timeout 2s, Rise 2, Fall 3, Jitter 0.1. Timeout is then capped at
// Interval, so a 1s Interval with no Timeout checks with a 1s Timeout.
//
// A negative Jitter, which turns jitter off, is kept as it is rather than
// set to 0, so that WithDefaults is idempotent: s.WithDefaults().WithDefaults()
// equals s.WithDefaults(). [Run] treats a negative Jitter as none.
//
// WithDefaults does not validate s; see [Schedule.Validate].
func (s Schedule) WithDefaults() Schedule {
	if s.Interval == 0 {
		s.Interval = defaultInterval
	}
	if s.Timeout == 0 {
		s.Timeout = defaultTimeout
	}
	if s.Timeout > s.Interval {
		s.Timeout = s.Interval
	}
	if s.Rise == 0 {
		s.Rise = defaultRise
	}
	if s.Fall == 0 {
		s.Fall = defaultFall
	}
	if s.Jitter == 0 {
		s.Jitter = defaultJitter
	}
	return s
}

// Validate reports the first impossible value in s, naming its field: a
// negative Interval or Timeout, a negative Rise or Fall, a Jitter of 1 or
// more (or NaN), or a Timeout longer than Interval when both are set. The
// zero Schedule is valid.
func (s Schedule) Validate() error {
	switch {
	case s.Interval < 0:
		return fmt.Errorf("health: negative Interval %v", s.Interval)
	case s.Timeout < 0:
		return fmt.Errorf("health: negative Timeout %v", s.Timeout)
	case s.Rise < 0:
		return fmt.Errorf("health: negative Rise %d", s.Rise)
	case s.Fall < 0:
		return fmt.Errorf("health: negative Fall %d", s.Fall)
	case !(s.Jitter < 1): // also catches NaN
		return fmt.Errorf("health: Jitter %v is not less than 1", s.Jitter)
	case s.Interval > 0 && s.Timeout > s.Interval:
		return fmt.Errorf("health: Timeout %v is longer than Interval %v", s.Timeout, s.Interval)
	}
	return nil
}
