package health

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestScheduleWithDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   Schedule
		want Schedule
	}{
		{"zero", Schedule{}, Schedule{Interval: 5 * time.Second, Timeout: 2 * time.Second, Rise: 2, Fall: 3, Jitter: 0.1}},
		{"timeout capped at a short interval", Schedule{Interval: time.Second},
			Schedule{Interval: time.Second, Timeout: time.Second, Rise: 2, Fall: 3, Jitter: 0.1}},
		{"long timeout capped at the default interval", Schedule{Timeout: time.Minute},
			Schedule{Interval: 5 * time.Second, Timeout: 5 * time.Second, Rise: 2, Fall: 3, Jitter: 0.1}},
		{"negative jitter kept", Schedule{Jitter: -1},
			Schedule{Interval: 5 * time.Second, Timeout: 2 * time.Second, Rise: 2, Fall: 3, Jitter: -1}},
		{"all set", Schedule{Interval: time.Minute, Timeout: time.Second, Rise: 1, Fall: 7, Jitter: 0.5, StartDown: true},
			Schedule{Interval: time.Minute, Timeout: time.Second, Rise: 1, Fall: 7, Jitter: 0.5, StartDown: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.in.WithDefaults()
			if got != tt.want {
				t.Errorf("%+v.WithDefaults() = %+v; want %+v", tt.in, got, tt.want)
			}
			if again := got.WithDefaults(); again != got {
				t.Errorf("WithDefaults is not idempotent: %+v, then %+v", got, again)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate() of defaults = %v", err)
			}
		})
	}
}

func TestScheduleValidate(t *testing.T) {
	tests := []struct {
		s    Schedule
		want string // a substring of the error; "" for none
	}{
		{Schedule{}, ""},
		{Schedule{Interval: time.Second, Timeout: time.Second, Rise: 1, Fall: 1, Jitter: 0.99, StartDown: true}, ""},
		{Schedule{Jitter: -5}, ""},
		{Schedule{Timeout: time.Hour}, ""}, // capped at the default Interval
		{Schedule{Interval: -1}, "Interval"},
		{Schedule{Timeout: -1}, "Timeout"},
		{Schedule{Rise: -1}, "Rise"},
		{Schedule{Fall: -1}, "Fall"},
		{Schedule{Jitter: 1}, "Jitter"},
		{Schedule{Jitter: math.NaN()}, "Jitter"},
		{Schedule{Interval: time.Second, Timeout: 2 * time.Second}, "Timeout 2s is longer than Interval 1s"},
	}
	for _, tt := range tests {
		err := tt.s.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%+v.Validate() = %v; want nil", tt.s, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "health: ")):
			t.Errorf("%+v.Validate() = %v; want an error naming %s", tt.s, err, tt.want)
		}
	}
}
