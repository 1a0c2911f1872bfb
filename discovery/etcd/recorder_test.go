package etcd_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tinylb/lb/discovery"
	"github.com/tinylb/lb/discovery/etcd"
)

// pushed is one call of push.
type pushed struct {
	set []discovery.Target
	err error
}

// recorder keeps every push of a running source.
type recorder struct {
	mu  sync.Mutex
	all []pushed
}

func (r *recorder) push(set []discovery.Target, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, pushed{set: set, err: err})
}

func (r *recorder) pushes() []pushed {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]pushed(nil), r.all...)
}

// waitFor waits until a push at index from or later satisfies ok, and
// returns the index after it.
func (r *recorder) waitFor(t testing.TB, from int, what string, ok func(pushed) bool) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		all := r.pushes()
		for i := from; i < len(all); i++ {
			if ok(all[i]) {
				return i + 1
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no push of %s after push %d in 20 s; pushes: %v", what, from, all)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitSet waits for a push of exactly want (as URLs in order) and returns
// the index after it.
func (r *recorder) waitSet(t testing.TB, from int, want ...string) int {
	t.Helper()
	return r.waitFor(t, from, "set "+joinURLs(want), func(p pushed) bool {
		return p.err == nil && equalURLs(p.set, want)
	})
}

// waitErr waits for a push of an error that is target.
func (r *recorder) waitErr(t testing.TB, from int, target error) int {
	t.Helper()
	return r.waitFor(t, from, "error "+target.Error(), func(p pushed) bool {
		return p.err != nil && errors.Is(p.err, target)
	})
}

// noEmptySet fails if any push carried an empty set.
func (r *recorder) noEmptySet(t testing.TB) {
	t.Helper()
	for i, p := range r.pushes() {
		if p.err == nil {
			require.NotEmpty(t, p.set, "push %d is an empty set", i)
		}
	}
}

func urls(set []discovery.Target) []string {
	out := make([]string, len(set))
	for i, tg := range set {
		out[i] = tg.URL
	}
	return out
}

func equalURLs(set []discovery.Target, want []string) bool {
	got := urls(set)
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

func joinURLs(u []string) string {
	s := "["
	for i, x := range u {
		if i > 0 {
			s += " "
		}
		s += x
	}
	return s + "]"
}

// runSource runs src until the test ends, and then checks that Run
// returned nil.
func runSource(t testing.TB, src *etcd.Source) *recorder {
	t.Helper()
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, rec.push) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("Run did not return 10 s after its context ended")
		}
	})
	return rec
}

// logs collects the records of a slog.Logger.
type logs struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }
func (l *logs) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logs) WithGroup(string) slog.Handler            { return l }

func (l *logs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r.Clone())
	return nil
}

// find returns the string attributes of the records whose message is msg.
func (l *logs) find(msg string) []map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]string
	for _, r := range l.records {
		if r.Message != msg {
			continue
		}
		m := map[string]string{}
		r.Attrs(func(a slog.Attr) bool {
			m[a.Key] = a.Value.String()
			return true
		})
		out = append(out, m)
	}
	return out
}

func slogLogger(h slog.Handler) *slog.Logger { return slog.New(h) }
