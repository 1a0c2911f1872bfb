package lb_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tinylb/lb"
)

func TestNewPoolErrors(t *testing.T) {
	t.Parallel()
	t.Run("duplicate URL", func(t *testing.T) {
		for _, pair := range [][2]string{
			{"http://10.0.0.1:8080", "http://10.0.0.1:8080"},
			{"http://10.0.0.1:8080", "http://10.0.0.1:8080/"},
			{"http://backend.internal:8080", "HTTP://Backend.Internal:8080"},
		} {
			a, b := backendFor(t, pair[0]), backendFor(t, pair[1])
			p, err := lb.NewPool(a, b)
			if !errors.Is(err, lb.ErrDuplicateBackend) {
				t.Errorf("NewPool(%q, %q) = %v, %v; want ErrDuplicateBackend", pair[0], pair[1], p, err)
			}
			if p != nil {
				t.Errorf("NewPool(%q, %q) returned a pool with its error", pair[0], pair[1])
			}
			// The failed call must not keep the backends: they can
			// still make a pool.
			if _, err := lb.NewPool(a); err != nil {
				t.Errorf("NewPool after a failed NewPool: %v", err)
			}
		}
	})
	t.Run("same backend twice", func(t *testing.T) {
		a := backendFor(t, "http://10.0.0.1:8080")
		if _, err := lb.NewPool(a, a); !errors.Is(err, lb.ErrDuplicateBackend) {
			t.Errorf("NewPool(a, a): %v; want ErrDuplicateBackend", err)
		}
	})
	t.Run("nil backend", func(t *testing.T) {
		if _, err := lb.NewPool(backendFor(t, "http://10.0.0.1:8080"), nil); !errors.Is(err, lb.ErrInvalidBackend) {
			t.Errorf("NewPool(a, nil): %v; want ErrInvalidBackend", err)
		}
		if _, err := lb.NewPool(&lb.Backend{}); !errors.Is(err, lb.ErrInvalidBackend) {
			t.Errorf("NewPool(&Backend{}): %v; want ErrInvalidBackend", err)
		}
	})
	t.Run("backend in another pool", func(t *testing.T) {
		a := backendFor(t, "http://10.0.0.1:8080")
		b := backendFor(t, "http://10.0.0.2:8080")
		if _, err := lb.NewPool(a); err != nil {
			t.Fatal(err)
		}
		if _, err := lb.NewPool(b, a); !errors.Is(err, lb.ErrBackendInUse) {
			t.Errorf("NewPool with a backend of another pool: %v; want ErrBackendInUse", err)
		}
		// b was released when the call failed.
		if _, err := lb.NewPool(b); err != nil {
			t.Errorf("NewPool(b) after the failed call: %v", err)
		}
		var p lb.Pool
		if err := p.Add(a); !errors.Is(err, lb.ErrBackendInUse) {
			t.Errorf("Add of a backend of another pool: %v; want ErrBackendInUse", err)
		}
	})
	t.Run("empty", func(t *testing.T) {
		p, err := lb.NewPool()
		if err != nil || p == nil {
			t.Fatalf("NewPool() = %v, %v; want an empty pool", p, err)
		}
		if p.Len() != 0 || len(p.Backends()) != 0 {
			t.Errorf("empty pool has Len %d, %d backends", p.Len(), len(p.Backends()))
		}
	})
}

func TestPoolMembership(t *testing.T) {
	t.Parallel()
	a := backendFor(t, "http://10.0.0.1:8080", lb.WithWeight(5))
	b := backendFor(t, "http://10.0.0.2:8080")
	pool, err := lb.NewPool(a, b)
	if err != nil {
		t.Fatal(err)
	}
	c := backendFor(t, "http://10.0.0.3:8080")
	if err := pool.Add(c); err != nil {
		t.Fatalf("Add(c): %v", err)
	}
	if err := pool.Add(backendFor(t, "http://10.0.0.3:8080/")); !errors.Is(err, lb.ErrDuplicateBackend) {
		t.Errorf("Add of a duplicate URL: %v; want ErrDuplicateBackend", err)
	}
	if err := pool.Add(nil); !errors.Is(err, lb.ErrInvalidBackend) {
		t.Errorf("Add(nil): %v; want ErrInvalidBackend", err)
	}

	var got []string
	for _, be := range pool.Backends() {
		var u = be.URL() // *url.URL
		var alive = be.Alive()
		got = append(got, fmt.Sprintf("%s %v", u.String(), alive))
	}
	want := "http://10.0.0.1:8080 true,http://10.0.0.2:8080 true,http://10.0.0.3:8080 true"
	if s := strings.Join(got, ","); s != want {
		t.Errorf("Backends() = %s; want %s", s, want)
	}

	// Backends returns the caller's copy.
	bs := pool.Backends()
	bs[0] = nil
	if pool.Backends()[0] != a {
		t.Error("modifying the slice Backends returned changed the pool")
	}

	if err := pool.Remove("http://10.0.0.9:8080"); !errors.Is(err, lb.ErrUnknownBackend) {
		t.Errorf("Remove(unknown): %v; want ErrUnknownBackend", err)
	}
	if err := pool.Remove("not a url"); !errors.Is(err, lb.ErrUnknownBackend) {
		t.Errorf("Remove(garbage): %v; want ErrUnknownBackend", err)
	}
	err = pool.Remove("http://user:pass@10.0.0.9:8080")
	if !errors.Is(err, lb.ErrUnknownBackend) || strings.Contains(err.Error(), "pass") {
		t.Errorf("Remove(URL with credentials): %v; want ErrUnknownBackend without the password", err)
	}
	// Another spelling of the same URL names the same backend.
	if err := pool.Remove("HTTP://10.0.0.2:8080/"); err != nil {
		t.Errorf("Remove(another spelling of b): %v", err)
	}
	if err := pool.Remove("http://10.0.0.2:8080"); !errors.Is(err, lb.ErrUnknownBackend) {
		t.Errorf("second Remove(b): %v; want ErrUnknownBackend", err)
	}
	if got, ok := pool.Get("http://10.0.0.3:8080"); !ok || got != c {
		t.Errorf("Get(c) = %v, %v; want c, true", got, ok)
	}
	if _, ok := pool.Get("http://10.0.0.2:8080"); ok {
		t.Error("Get(b) found the removed backend")
	}
	if n := pool.Len(); n != 2 {
		t.Errorf("Len() = %d; want 2", n)
	}
	// A removed backend can come back.
	if err := pool.Add(b); err != nil {
		t.Errorf("Add(b) after Remove(b): %v", err)
	}
}

func TestPoolZeroValue(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, "a", nil)
	var pool lb.Pool
	if err := pool.Add(backendFor(t, up.url)); err != nil {
		t.Fatalf("Add to a zero Pool: %v", err)
	}
	g := startGateway(t, &pool, lb.RoundRobin())
	if got := g.served(t, nil); got != "a" {
		t.Errorf("served by %q; want a", got)
	}
}

// TestPoolAddRemoveUnderTraffic changes the pool while clients send
// requests: no request fails, an added backend takes its share at once and
// a removed one gets no new request once Remove has returned.
func TestPoolAddRemoveUnderTraffic(t *testing.T) {
	t.Parallel()
	a := startUpstream(t, "a", nil)
	b := startUpstream(t, "b", nil)
	c := startUpstream(t, "c", nil)
	pool, _ := poolOf(t, a.url, b.url)
	g := startGateway(t, pool, lb.RoundRobin())

	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		failures atomic.Int64
		firstErr atomic.Value
		sent     atomic.Int64
	)
	for w := range 8 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				r, err := g.do(context.Background(), http.MethodGet, "/", id, nil, nil)
				sent.Add(1)
				if err == nil && (r.status != http.StatusOK || !strings.HasSuffix(string(r.body), "|"+id)) {
					err = fmt.Errorf("status %d, body %q", r.status, r.body)
				}
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		})
	}
	defer func() {
		stop.Store(true)
		wg.Wait()
	}()

	eventually(t, "traffic on a and b", func() bool { return a.count() >= 20 && b.count() >= 20 })
	if err := pool.Add(backendFor(t, c.url)); err != nil {
		t.Fatalf("Add(c) under traffic: %v", err)
	}
	eventually(t, "traffic on c after Add", func() bool { return c.count() >= 20 })
	if err := pool.Remove(b.url); err != nil {
		t.Fatalf("Remove(b) under traffic: %v", err)
	}
	mark := sent.Load()
	eventually(t, "traffic after Remove", func() bool { return sent.Load() >= mark+50 })
	stop.Store(true)
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed while the pool changed; first: %v", n, sent.Load(), firstErr.Load())
	}

	// Now quiet: b gets nothing, a and c split exactly.
	before := b.count()
	na, nc := a.count(), c.count()
	for range 30 {
		g.served(t, nil)
	}
	if got := b.count() - before; got != 0 {
		t.Errorf("removed backend b got %d requests after Remove returned; want 0", got)
	}
	if da, dc := a.count()-na, c.count()-nc; da != 15 || dc != 15 {
		t.Errorf("after Remove(b): a got %d, c got %d of 30; want 15 each", da, dc)
	}
}
