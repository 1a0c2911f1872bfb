package discovery_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/discovery"
)

// The pool follows the source's sets; members that stay keep their
// lb.Backend and counters; requests reach exactly the members of the set.
func TestWatchFollowsSource(t *testing.T) {
	a, b, c := newServer(t, "a"), newServer(t, "b"), newServer(t, "c")
	pool := &lb.Pool{}
	bal, fr := front(t, pool, lb.RoundRobin())
	src := newFeed()
	var evs eventLog
	w := watch(t, src, pool, discovery.WithEvents(evs.add), discovery.WithDebounce(0))

	src.send(t, targets(a.URL, b.URL), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, w.WaitReady(ctx))
	assert.Equal(t, []string{a.URL, b.URL}, members(pool))
	hc := client(t)
	seen := map[string]int{}
	for range 4 {
		status, body := get(t, hc, fr.URL)
		require.Equal(t, 200, status)
		seen[body]++
	}
	assert.Equal(t, map[string]int{"a": 2, "b": 2}, seen)
	bBefore, _ := pool.Get(b.URL)

	src.send(t, []discovery.Target{{URL: b.URL, Weight: 3}, {URL: c.URL, Backup: true}}, nil)
	waitFor(t, "c in the pool", func() bool { _, ok := pool.Get(c.URL); return ok })
	assert.Equal(t, []string{b.URL, c.URL}, members(pool))
	bAfter, _ := pool.Get(b.URL)
	assert.Same(t, bBefore, bAfter, "a member that stays keeps its lb.Backend")
	assert.Equal(t, 3, bAfter.Weight())
	cb, _ := pool.Get(c.URL)
	assert.True(t, cb.Backup())
	for _, st := range bal.Stats().Backends {
		if st.URL == b.URL {
			assert.EqualValues(t, 2, st.Requests, "b keeps its request count")
		}
	}
	for range 3 {
		_, body := get(t, hc, fr.URL)
		assert.Equal(t, "b", body, "c is a backup and b is up")
	}

	waitFor(t, "two applied events", func() bool { return len(evs.of(discovery.EventApplied)) == 2 })
	ev := evs.of(discovery.EventApplied)[1]
	assert.Equal(t, []string{c.URL}, ev.Added)
	assert.Equal(t, []string{a.URL}, ev.Removed)
	assert.Equal(t, 2, ev.Size)
	st := w.Stats()
	assert.EqualValues(t, 2, st.Updates)
	assert.Equal(t, 2, st.Size)
	assert.False(t, st.LastUpdate.IsZero())
	assert.NoError(t, st.LastError)
}

// A target with a bad URL or weight, or repeating another's URL, is
// skipped and reported; the others are applied.
func TestWatchSkipsInvalidTargets(t *testing.T) {
	a, b := newServer(t, "a"), newServer(t, "b")
	pool := &lb.Pool{}
	src := newFeed()
	var evs eventLog
	var logs logBuffer
	w := watch(t, src, pool, discovery.WithEvents(evs.add), discovery.WithLogger(logs.logger()))
	src.send(t, []discovery.Target{
		{URL: a.URL},
		{URL: "10.0.0.1:8080"},          // no scheme
		{URL: b.URL, Weight: 5000},      // weight out of range
		{URL: a.URL + "/", Weight: 2},   // a again
		{URL: "http://user:pw@x:8080/"}, // credentials
		{URL: b.URL, Weight: 2},
	}, nil)
	require.NoError(t, w.WaitReady(context.Background()))
	assert.Equal(t, []string{a.URL, b.URL}, members(pool))
	bb, _ := pool.Get(b.URL)
	assert.Equal(t, 2, bb.Weight())
	assert.EqualValues(t, 4, w.Stats().Skipped)
	waitFor(t, "4 skip events", func() bool { return len(evs.of(discovery.EventTargetSkipped)) == 4 })
	for _, ev := range evs.of(discovery.EventTargetSkipped) {
		assert.ErrorIs(t, ev.Err, discovery.ErrInvalidTarget)
		if !errors.Is(ev.Err, lb.ErrDuplicateBackend) {
			assert.ErrorIs(t, ev.Err, lb.ErrInvalidBackend, ev.Target)
		}
	}
	assert.Contains(t, logs.String(), "want an http:// or https:// URL")
	assert.NotContains(t, logs.String(), "pw@", "credentials are never logged")
}

// A source error keeps the last good set, counts, logs and reports it.
func TestWatchKeepsLastSetOnError(t *testing.T) {
	a := newServer(t, "a")
	pool := &lb.Pool{}
	_, fr := front(t, pool, lb.RoundRobin())
	src := newFeed()
	var evs eventLog
	var logs logBuffer
	w := watch(t, src, pool, discovery.WithEvents(evs.add), discovery.WithLogger(logs.logger()))
	src.send(t, targets(a.URL), nil)
	require.NoError(t, w.WaitReady(context.Background()))

	boom := errors.New("registry unreachable")
	src.send(t, nil, boom)
	src.send(t, nil, boom)
	waitFor(t, "two errors counted", func() bool { return w.Stats().Errors == 2 })
	st := w.Stats()
	assert.ErrorIs(t, st.LastError, boom)
	assert.False(t, st.LastErrorTime.IsZero())
	assert.Equal(t, 1, st.Size)
	assert.EqualValues(t, 1, st.Updates)
	assert.Equal(t, []string{a.URL}, members(pool))
	status, body := get(t, client(t), fr.URL)
	assert.Equal(t, 200, status)
	assert.Equal(t, "a", body)
	waitFor(t, "error events", func() bool { return len(evs.of(discovery.EventSourceError)) == 2 })
	assert.Contains(t, logs.String(), "registry unreachable")
}

// An empty set (or one with no usable target) keeps the last non-empty set
// and is reported, unless WithAllowEmpty lets it empty the pool.
func TestWatchEmptySet(t *testing.T) {
	a := newServer(t, "a")
	for _, allow := range []bool{false, true} {
		pool := &lb.Pool{}
		src := newFeed()
		var evs eventLog
		opts := []discovery.Option{discovery.WithEvents(evs.add), discovery.WithDebounce(0)}
		if allow {
			opts = append(opts, discovery.WithAllowEmpty())
		}
		w := watch(t, src, pool, opts...)
		src.send(t, targets(a.URL), nil)
		require.NoError(t, w.WaitReady(context.Background()))
		src.send(t, []discovery.Target{}, nil)
		if !allow {
			waitFor(t, "one ignored set", func() bool { return w.Stats().Ignored == 1 })
		} else {
			waitFor(t, "the pool emptied", func() bool { return pool.Len() == 0 })
		}
		src.send(t, targets("not a url"), nil)
		if !allow {
			waitFor(t, "two ignored sets", func() bool { return w.Stats().Ignored == 2 })
			assert.Equal(t, []string{a.URL}, members(pool))
			evIgn := evs.of(discovery.EventIgnored)
			waitFor(t, "ignored events", func() bool { evIgn = evs.of(discovery.EventIgnored); return len(evIgn) == 2 })
			assert.ErrorIs(t, evIgn[0].Err, discovery.ErrEmptySet)
			continue
		}
		waitFor(t, "the pool emptied", func() bool { return pool.Len() == 0 && w.Stats().Updates == 3 })
		assert.Zero(t, w.Stats().Ignored)
	}
}

// A burst of sets is applied as few updates, the latest set winning.
func TestWatchDebouncesBursts(t *testing.T) {
	pool := &lb.Pool{}
	src := newFeed()
	w := watch(t, src, pool, discovery.WithDebounce(200*time.Millisecond))
	src.send(t, targets("http://127.0.0.1:1"), nil)
	require.NoError(t, w.WaitReady(context.Background()))
	const n = 100
	for i := range n {
		src.send(t, targets("http://127.0.0.1:1", "http://127.0.0.1:"+itoa(1000+i)), nil)
	}
	last := "http://127.0.0.1:" + itoa(1000+n-1)
	waitFor(t, "the last set applied", func() bool { _, ok := pool.Get(last); return ok })
	assert.Equal(t, 2, pool.Len())
	assert.Less(t, w.Stats().Updates, int64(n/4), "a burst of %d sets costs few updates", n)
}

// Close stops the source's Run and waits for it; so does the end of
// Watch's context. WaitReady then reports ErrClosed.
func TestWatchCloseStopsSource(t *testing.T) {
	src := newFeed()
	w := discovery.Watch(context.Background(), src, &lb.Pool{})
	waitFor(t, "Run running", func() bool { return src.runs.Load() == 1 })
	require.NoError(t, w.Close())
	assert.Zero(t, src.runs.Load())
	require.NoError(t, w.Close(), "Close is idempotent")
	assert.ErrorIs(t, w.WaitReady(context.Background()), discovery.ErrClosed)

	ctx, cancel := context.WithCancel(context.Background())
	src2 := newFeed()
	w2 := discovery.Watch(ctx, src2, &lb.Pool{})
	waitFor(t, "Run running", func() bool { return src2.runs.Load() == 1 })
	cancel()
	waitFor(t, "Run returned", func() bool { return src2.runs.Load() == 0 })
	w2.Close()
}

// A source whose Run returns is reported, and WaitReady says so; the pool
// keeps its set. Nil arguments are an error, not a panic.
func TestWatchSourceStops(t *testing.T) {
	a := newServer(t, "a")
	pool := &lb.Pool{}
	fatal := errors.New("bad credentials")
	var evs eventLog
	w := watch(t, discovery.SourceFunc(func(ctx context.Context, push func([]discovery.Target, error)) error {
		push(targets(a.URL), nil)
		return fatal
	}), pool, discovery.WithEvents(evs.add))
	waitFor(t, "the stop reported", func() bool { return len(evs.of(discovery.EventSourceStopped)) == 1 })
	ev := evs.of(discovery.EventSourceStopped)[0]
	assert.ErrorIs(t, ev.Err, discovery.ErrSourceStopped)
	assert.ErrorIs(t, ev.Err, fatal)
	waitFor(t, "the set applied", func() bool { return pool.Len() == 1 })
	assert.NoError(t, w.WaitReady(context.Background()), "the set came before the stop")

	early := watch(t, discovery.SourceFunc(func(context.Context, func([]discovery.Target, error)) error {
		return fatal
	}), &lb.Pool{})
	err := early.WaitReady(context.Background())
	assert.ErrorIs(t, err, discovery.ErrSourceStopped)
	assert.ErrorIs(t, err, fatal)

	bad := watch(t, nil, nil)
	assert.ErrorIs(t, bad.WaitReady(context.Background()), discovery.ErrSourceStopped)
	assert.Error(t, bad.Stats().LastError)
}

// WaitReady gives up when its context ends before the first set.
func TestWaitReadyContext(t *testing.T) {
	w := watch(t, newFeed(), &lb.Pool{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, w.WaitReady(ctx), context.DeadlineExceeded)
}

func itoa(i int) string { return strconv.Itoa(i) }
