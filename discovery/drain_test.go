package discovery_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/discovery"
)

// stateOf returns the state of the backend with the given URL.
func stateOf(bal *lb.Balancer, url string) lb.State {
	for _, b := range bal.Stats().Backends {
		if b.URL == url {
			return b.State
		}
	}
	return lb.StateClosed
}

// A draining target stays in the pool and drains: its request in flight
// finishes, new ones go elsewhere. Back ready, it takes requests again;
// gone, it is removed. A target new to the pool that is already draining
// is not added.
func TestWatchDrainsTargets(t *testing.T) {
	a, b, c := newServer(t, "a"), newServer(t, "b"), newServer(t, "c")
	pool := &lb.Pool{}
	drained := make(chan string, 4)
	bal, fr := front(t, pool, lb.RoundRobin(), lb.WithEvents(func(ev lb.Event) {
		if ev.Kind == lb.EventDrained {
			drained <- ev.Backend.Key()
		}
	}))
	src := newFeed()
	w := watch(t, src, pool, discovery.WithDebounce(0))
	src.send(t, targets(a.URL), nil)
	require.NoError(t, w.WaitReady(context.Background()))
	hc := client(t)

	slow := make(chan int, 1)
	go func() {
		resp, err := hc.Get(fr.URL + "/slow")
		if err != nil {
			slow <- 0
			return
		}
		resp.Body.Close()
		slow <- resp.StatusCode
	}()
	<-a.started

	src.send(t, []discovery.Target{{URL: a.URL, Draining: true}, {URL: b.URL}, {URL: c.URL, Draining: true}}, nil)
	waitFor(t, "a draining", func() bool { return stateOf(bal, a.URL) == lb.StateDraining })
	assert.Equal(t, []string{a.URL, b.URL}, members(pool), "a stays; c, new and draining, is not added")
	assert.Equal(t, 1, w.Stats().Draining)
	for range 4 {
		_, body := get(t, hc, fr.URL)
		assert.Equal(t, "b", body)
	}
	select {
	case k := <-drained:
		t.Fatalf("%s drained with a request in flight", k)
	default:
	}
	a.unblock()
	assert.Equal(t, http.StatusOK, <-slow, "the request in flight finishes")
	assert.Equal(t, a.URL, <-drained)

	// A later set that still says draining changes nothing.
	src.send(t, []discovery.Target{{URL: a.URL, Draining: true}, {URL: b.URL}}, nil)
	waitFor(t, "the set applied", func() bool { return w.Stats().Updates == 3 })
	assert.Equal(t, lb.StateDraining, stateOf(bal, a.URL))

	src.send(t, targets(a.URL, b.URL), nil)
	waitFor(t, "a back in service", func() bool { return stateOf(bal, a.URL) == lb.StateUp })
	assert.Zero(t, w.Stats().Draining)
	seen := map[string]int{}
	for range 4 {
		_, body := get(t, hc, fr.URL)
		seen[body]++
	}
	assert.Equal(t, map[string]int{"a": 2, "b": 2}, seen)

	// Draining again, then gone: removed, and its drain called off.
	src.send(t, []discovery.Target{{URL: a.URL, Draining: true}, {URL: b.URL}}, nil)
	waitFor(t, "a draining again", func() bool { return stateOf(bal, a.URL) == lb.StateDraining })
	src.send(t, targets(b.URL), nil)
	waitFor(t, "a removed", func() bool { _, ok := pool.Get(a.URL); return !ok })
	assert.Zero(t, w.Stats().Draining)
}

// Close calls off a drain that waits for a request in flight; the backend
// stays draining.
func TestWatchCloseCallsOffDrain(t *testing.T) {
	a, b := newServer(t, "a"), newServer(t, "b")
	pool := &lb.Pool{}
	bal, fr := front(t, pool, lb.RoundRobin())
	src := newFeed()
	w := discovery.Watch(context.Background(), src, pool, discovery.WithDebounce(0))
	src.send(t, targets(a.URL), nil)
	require.NoError(t, w.WaitReady(context.Background()))
	hc := client(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := hc.Get(fr.URL + "/slow"); err == nil {
			resp.Body.Close()
		}
	}()
	<-a.started
	src.send(t, []discovery.Target{{URL: a.URL, Draining: true}, {URL: b.URL}}, nil)
	waitFor(t, "a draining", func() bool { return stateOf(bal, a.URL) == lb.StateDraining })
	require.NoError(t, w.Close()) // returns with a's request still in flight
	assert.Equal(t, lb.StateDraining, stateOf(bal, a.URL))
	a.unblock()
	<-done
}
