package lb_test

// End-to-end tests that health transitions are observable: as events and
// as log records. Helpers: helpers_health_test.go,
// helpers_health_backend_test.go.

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
)

// ---------------------------------------------------------------------------
// Transitions are observable

func TestHealthTransitionsEmitStateChangedEvents(t *testing.T) {
	a, b := startHC(t, "a"), startHC(t, "b")
	var events hcEvents
	// An in-memory checker: the test is about how transitions are
	// reported, and it never times out on a loaded machine.
	flags := newHCFlags(10 * time.Millisecond)
	bal := lb.New(hcPool(t, []*hcServer{a, b}), lb.RoundRobin(),
		lb.WithHealthCheck(flags), lb.WithEvents(events.add))
	hcServe(t, bal, a, b)
	hcWaitChecked(t, bal, a, b)
	flags.set(false, b)
	hcWait(t, "the down event", func() bool { return len(events.changes(b.url)) >= 1 })
	flags.set(true, b)
	hcWait(t, "the up event", func() bool { return len(events.changes(b.url)) >= 2 })

	ch := events.changes(b.url)
	if len(ch) != 2 {
		t.Fatalf("b's state changes: %s; want down then up", hcDescribe(ch))
	}
	down, up := ch[0], ch[1]
	if down.From != lb.StateUp || down.To != lb.StateDown || !strings.Contains(down.Reason, "health check failed") {
		t.Errorf("down event %+v; want up→down with the failed checks as reason", down)
	}
	if up.From != lb.StateDown || up.To != lb.StateUp || !strings.Contains(up.Reason, "health check passed") {
		t.Errorf("up event %+v; want down→up with the passed checks as reason", up)
	}
	for _, ev := range ch {
		if ev.Backend == nil || ev.Backend.String() != b.url || ev.Time.IsZero() {
			t.Errorf("event %+v: want b's Backend and a time", ev)
		}
	}
	if n := len(events.changes(a.url)); n != 0 {
		t.Errorf("a changed state %d times", n)
	}
}

func TestHealthTransitionsLoggedAtInfoButNotRequests(t *testing.T) {
	a, b := startHC(t, "a"), startHC(t, "b")
	logs := &hcLogHandler{}
	flags := newHCFlags(10 * time.Millisecond) // as in the events test
	bal := lb.New(hcPool(t, []*hcServer{a, b}), lb.RoundRobin(),
		lb.WithHealthCheck(flags),
		lb.WithPassiveHealth(&health.Passive{MaxFails: 3}),
		lb.WithLogger(slog.New(logs)))
	gw := hcServe(t, bal, a, b)
	hcWaitChecked(t, bal, a, b)

	gw.spread(t, 50)
	if recs := logs.atLeast(slog.LevelInfo); len(recs) != 0 {
		t.Fatalf("%d records at Info or above for 50 successful requests, first %q", len(recs), recs[0].Message)
	}
	flags.set(false, b)
	hcWaitState(t, bal, b.url, lb.StateDown)
	flags.set(true, b)
	hcWaitState(t, bal, b.url, lb.StateUp)
	gw.spread(t, 50)

	recs := logs.atLeast(slog.LevelInfo)
	if len(recs) != 2 {
		var msgs []string
		for _, r := range recs {
			msgs = append(msgs, r.Message)
		}
		t.Fatalf("records at Info or above: %q; want the two transitions only", msgs)
	}
	for i, want := range [][2]string{{"up", "down"}, {"down", "up"}} {
		r := recs[i]
		at := hcAttrs(r)
		if r.Level != slog.LevelInfo || at["backend"] != b.url || at["from"] != want[0] || at["to"] != want[1] || at["reason"] == "" {
			t.Errorf("record %d: %v %q %v; want Info, b, %s→%s with a reason", i, r.Level, r.Message, at, want[0], want[1])
		}
	}
}
