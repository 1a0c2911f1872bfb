package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// epoch is the time 0 of the timelines below.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(sec float64) time.Time { return epoch.Add(time.Duration(sec * float64(time.Second))) }

var errRefused = errors.New("connection refused")

// event is one step of a passive-health timeline.
type event struct {
	t    float64 // seconds from epoch
	kind string  // "fail" (an error), "ok" (status 200), "reset", or a status such as "503"
	want string  // "" not failed; "F" failed, not ejected; "F+15" failed, ejected until t=15
}

func (e event) outcome() Outcome {
	switch e.kind {
	case "fail":
		return Outcome{Time: at(e.t), Err: errRefused}
	case "ok":
		return Outcome{Time: at(e.t), Status: 200}
	}
	var status int
	fmt.Sscan(e.kind, &status)
	return Outcome{Time: at(e.t), Status: status}
}

func play(t *testing.T, tr Tracker, events []event) {
	t.Helper()
	for _, e := range events {
		if e.kind == "reset" {
			tr.Reset()
			continue
		}
		failed, until := tr.Observe(e.outcome())
		got := ""
		if failed {
			got = "F"
		}
		if !until.IsZero() {
			got += fmt.Sprintf("+%g", until.Sub(epoch).Seconds())
		}
		if got != e.want {
			t.Errorf("%s at t=%g: got %q; want %q", e.kind, e.t, got, e.want)
		}
	}
}

func TestPassiveWindow(t *testing.T) {
	p := Passive{MaxFails: 3, FailTimeout: 10 * time.Second, FailStatuses: []int{502, 503}}
	tests := []struct {
		name   string
		events []event
	}{
		{"nginx case A: three fails within the window", []event{
			{0, "fail", "F"}, {2, "fail", "F"}, {5, "fail", "F+15"},
		}},
		{"after an ejection, one more failure ejects again", []event{
			{0, "fail", "F"}, {2, "fail", "F"}, {5, "fail", "F+15"}, {16, "fail", "F+26"},
		}},
		{"after an ejection, a success ends the probation", []event{
			{0, "fail", "F"}, {2, "fail", "F"}, {5, "fail", "F+15"}, {16, "ok", ""}, {17, "fail", "F"},
			{18, "fail", "F"}, {19, "fail", "F+29"},
		}},
		{"window inclusive", []event{
			{0, "fail", "F"}, {5, "fail", "F"}, {10, "fail", "F+20"},
		}},
		{"older failures forgotten", []event{
			{0, "fail", "F"}, {1, "fail", "F"}, {10.5, "fail", "F"}, {11, "fail", "F+21"},
		}},
		{"nginx case B: slow failures never add up", []event{
			{0, "fail", "F"}, {1, "fail", "F"}, {4, "ok", ""}, {30, "fail", "F"},
		}},
		{"nginx case C", []event{
			{0, "fail", "F"}, {1, "fail", "F"}, {20, "ok", ""}, {21, "fail", "F"}, {22, "fail", "F"},
		}},
		{"successes do not erase failures", []event{
			{0, "fail", "F"}, {1, "ok", ""}, {2, "fail", "F"}, {3, "ok", ""}, {4, "fail", "F+14"},
		}},
		{"listed statuses count, others do not", []event{
			{0, "503", "F"}, {1, "500", ""}, {2, "504", ""}, {3, "429", ""}, {4, "404", ""}, {5, "502", "F"},
			{6, "503", "F+16"},
		}},
		{"reset forgets", []event{
			{0, "fail", "F"}, {1, "fail", "F"}, {2, "reset", ""}, {3, "fail", "F"}, {4, "fail", "F"}, {5, "fail", "F+15"},
			{6, "reset", ""}, {7, "fail", "F"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			play(t, p.Track(testTarget), tt.events)
		})
	}
}

func TestPassiveFailure(t *testing.T) {
	tr := Passive{MaxFails: 100, FailStatuses: []int{500, 502, 503, 504, 599}}.Track(testTarget)
	tests := []struct {
		o    Outcome
		want bool
	}{
		{Outcome{Status: 200}, false},
		{Outcome{Status: 302}, false},
		{Outcome{Status: 400}, false},
		{Outcome{Status: 404}, false},
		{Outcome{Status: 429}, false},
		{Outcome{Status: 500}, true},
		{Outcome{Status: 501}, false},
		{Outcome{Status: 503}, true},
		{Outcome{Status: 599}, true},
		{Outcome{Err: errRefused}, true},
		{Outcome{Err: context.DeadlineExceeded}, true},
		{Outcome{Err: io.ErrUnexpectedEOF, Status: 200}, true}, // body cut short
		{Outcome{Err: context.Canceled}, false},
		{Outcome{Err: fmt.Errorf("proxy: %w", context.Canceled), Status: 502}, false},
		{Outcome{Err: errRefused, Canceled: true}, false},
		{Outcome{Status: 503, Canceled: true}, false},
	}
	for _, tt := range tests {
		tt.o.Time = epoch
		if got, _ := tr.Observe(tt.o); got != tt.want {
			t.Errorf("Observe(%+v) failed = %v; want %v", tt.o, got, tt.want)
		}
	}
}

func TestPassiveDefaults(t *testing.T) {
	t.Run("zero value: one error ejects for 10s", func(t *testing.T) {
		play(t, Passive{}.Track(testTarget), []event{
			{0, "503", ""}, {1, "fail", "F+11"},
		})
	})
	t.Run("negative MaxFails: failures reported, never ejected", func(t *testing.T) {
		play(t, Passive{MaxFails: -1, FailStatuses: []int{503}}.Track(testTarget), []event{
			{0, "fail", "F"}, {1, "fail", "F"}, {2, "503", "F"}, {3, "404", ""}, {4, "reset", ""}, {5, "fail", "F"},
		})
	})
	t.Run("invalid settings: defaults", func(t *testing.T) {
		play(t, Passive{FailTimeout: -time.Second, FailStatuses: []int{404, 1000, -5}}.Track(testTarget), []event{
			{0, "404", ""}, {1, "fail", "F+11"},
		})
	})
	t.Run("zero time means now", func(t *testing.T) {
		before := time.Now()
		_, until := Passive{}.Track(testTarget).Observe(Outcome{Err: errRefused})
		if d := until.Sub(before); d < 10*time.Second || d > 11*time.Second {
			t.Errorf("ejected until %v from now; want 10s", d)
		}
	})
	t.Run("trackers are separate", func(t *testing.T) {
		p := Passive{MaxFails: 2}
		a, b := p.Track(testTarget), p.Track(&url.URL{Scheme: "http", Host: "other"})
		play(t, a, []event{{0, "fail", "F"}})
		play(t, b, []event{{1, "fail", "F"}})
		play(t, a, []event{{2, "fail", "F+12"}})
	})
	t.Run("FailStatuses copied", func(t *testing.T) {
		statuses := []int{503}
		tr := Passive{FailStatuses: statuses}.Track(testTarget)
		statuses[0] = 500
		play(t, tr, []event{{0, "500", ""}, {1, "503", "F+11"}})
	})
}

func TestPassiveValidate(t *testing.T) {
	tests := []struct {
		p    Passive
		want string // a substring of the error; "" for none
	}{
		{Passive{}, ""},
		{Passive{MaxFails: -1}, ""},
		{Passive{MaxFails: 5, FailTimeout: time.Minute, FailStatuses: []int{500, 599}}, ""},
		{Passive{FailTimeout: -1}, "FailTimeout"},
		{Passive{FailStatuses: []int{503, 429}}, "FailStatuses entry 429"},
		{Passive{FailStatuses: []int{600}}, "FailStatuses entry 600"},
	}
	for _, tt := range tests {
		err := tt.p.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%+v.Validate() = %v; want nil", tt.p, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "health: ")):
			t.Errorf("%+v.Validate() = %v; want an error naming %s", tt.p, err, tt.want)
		}
	}
}

func TestPassiveConcurrent(t *testing.T) {
	const (
		goroutines = 16
		each       = 500
	)
	p := Passive{MaxFails: 20, FailTimeout: time.Hour, FailStatuses: []int{503}}
	trackers := []Tracker{p.Track(testTarget), p.Track(testTarget)}
	var mu sync.Mutex
	failed, ejections := 0, 0
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			tr := trackers[g%2]
			for i := range each {
				o := Outcome{Time: at(float64(i)), Status: 200}
				switch i % 4 {
				case 0:
					o.Err = errRefused
				case 1:
					o.Status = 503
				case 2:
					o.Canceled = true
					o.Err = context.Canceled
				}
				f, until := tr.Observe(o)
				if i%97 == 0 {
					tr.Reset()
				}
				mu.Lock()
				if f {
					failed++
				}
				if !until.IsZero() {
					ejections++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if want := goroutines * each / 2; failed != want {
		t.Errorf("got %d failures; want %d", failed, want)
	}
	if ejections == 0 {
		t.Error("got no ejections")
	}
}

// BenchmarkPassiveObserve measures Observe on one backend from many
// goroutines, with one failure in ten.
func BenchmarkPassiveObserve(b *testing.B) {
	tr := Passive{MaxFails: 5, FailStatuses: []int{502, 503, 504}}.Track(testTarget)
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			o := Outcome{Time: now, Status: 200}
			if i%10 == 0 {
				o.Status = 503
			}
			tr.Observe(o)
			i++
		}
	})
}
