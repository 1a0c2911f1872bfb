package reliability

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	neturl "net/url"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
	"github.com/tinylb/lb/internal/faultkit"
)

// R1: after Close no goroutine of the balancer remains (its checkers, its
// event dispatcher, the idle connections of its own transport); Close is
// idempotent and a request after it gets 503.
func TestR1_CloseLeavesNothing(t *testing.T) {
	b := faultkit.MustBackend(faultkit.Config{Name: "a"})
	defer b.Close()
	base := goroutines()
	p, err := lb.NewPool(mustBackend(t, b.URL))
	if err != nil {
		t.Fatal(err)
	}
	bal := lb.New(p, lb.LeastConn(),
		lb.WithHealthCheck(&health.HTTPCheck{Path: faultkit.HealthPath, Interval: 20 * time.Millisecond}),
		lb.WithPassiveHealth(health.Passive{}),
		lb.WithEvents(func(lb.Event) {}))
	srv := httptest.NewServer(bal)
	c := faultkit.NewClient(srv.URL)
	for range 20 {
		if a := c.Do(context.Background(), faultkit.Request{N: 100}); !a.OK() {
			t.Fatalf("%+v", a)
		}
	}
	// Close first, while the front still holds its connections.
	bal.Close()
	bal.Close()
	a := c.Do(context.Background(), faultkit.Request{N: 1})
	if a.Status != http.StatusServiceUnavailable {
		t.Errorf("R1: request after Close: %d, want 503", a.Status)
	}
	c.Close()
	srv.Close()
	mustWait(t, 3*time.Second, "goroutines back to baseline", func() bool { return runtime.NumGoroutine() <= base })
	checks := b.HealthChecks()
	time.Sleep(60 * time.Millisecond)
	if got := b.HealthChecks(); got != checks {
		t.Errorf("R1: %d health checks after Close", got-checks)
	}
}

func mustBackend(t testing.TB, u string, opts ...lb.BackendOption) *lb.Backend {
	t.Helper()
	b, err := lb.NewBackend(u, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// countingCheck counts checks, and those that start after it was told the
// balancer is closed.
type countingCheck struct {
	checks, late atomic.Int64
	closed       atomic.Bool
}

func (c *countingCheck) Schedule() health.Schedule {
	return health.Schedule{Interval: time.Millisecond, Timeout: time.Millisecond}
}

func (c *countingCheck) Check(ctx context.Context, _ *neturl.URL) error {
	c.checks.Add(1)
	if c.closed.Load() {
		c.late.Add(1)
	}
	return nil
}

// R2: creating and closing many balancers with health checks leaves no
// goroutine or timer behind, and no check starts after Close returns.
func TestR2_CheckerLifecycle(t *testing.T) {
	n := scale(300, 1000)
	if !raceEnabled {
		n = 1000
	}
	b := faultkit.MustBackend(faultkit.Config{Name: "a"})
	defer b.Close()
	base := goroutines()
	var checks, late int64
	for i := range n {
		p, err := lb.NewPool(mustBackend(t, b.URL), mustBackend(t, fmt.Sprintf("http://127.0.0.1:%d", 1+i%60000)))
		if err != nil {
			t.Fatal(err)
		}
		c := &countingCheck{}
		bal := lb.New(p, nil, lb.WithHealthCheck(c), lb.WithEvents(func(lb.Event) {}))
		if i%2 == 0 {
			time.Sleep(time.Millisecond) // let some checks run
		}
		bal.Close()
		c.closed.Store(true)
		time.Sleep(0)
		checks += c.checks.Load()
		late += c.late.Load()
	}
	if late != 0 {
		t.Errorf("R2: %d checks started after Close returned", late)
	}
	mustWait(t, 3*time.Second, "goroutines back to baseline", func() bool { return runtime.NumGoroutine() <= base })
	t.Logf("R2: %d balancers created and closed, %d checks run, 0 after Close", n, checks)
}

// R3: file descriptors return to their baseline after a load and fault
// scenario, with the balancer's own transport (its Close closes idle
// backend connections).
func TestR3_FileDescriptorsBackToBaseline(t *testing.T) {
	if faultkit.FDCount() < 0 {
		t.Skip("no /proc/self/fd on this system")
	}
	base := faultkit.FDCount()
	t.Run("load and faults", func(t *testing.T) {
		e := newEnv(t, envConfig{n: 3, defaultTransport: true, opts: []lb.Option{lb.WithPassiveHealth(health.Passive{MaxFails: 5})}})
		e.backends[1].SetBehavior(faultkit.Behavior{ResetAfterFraction: 0.5})
		e.backends[2].SetFault(faultkit.Fault{Kind: faultkit.ResetAfterRead})
		e.client.Run(context.Background(), faultkit.Load{Workers: 8, Count: scale(400, 4000), Next: mixedRequest(32 << 10)})
		e.checkIntegrity(e.client.Attempts())
	})
	var now int
	ok := waitFor(t, 5*time.Second, "fds back to baseline", func() bool {
		now = faultkit.FDCount()
		return now <= base+2
	})
	if !ok {
		t.Errorf("R3: %d fds open after the scenario, %d before", now, base)
	}
}

// R4: memory returns to its baseline after many requests with 64 KiB
// bodies and many distinct hash keys: nothing is kept per request or per
// key.
func TestR4_MemoryBaseline(t *testing.T) {
	e := newEnv(t, envConfig{n: 3, strategy: lb.ConsistentHash(lb.HeaderKey("X-Key"))})
	e.client.Keep = false
	heap := func() uint64 {
		var ms runtime.MemStats
		for range 3 {
			runtime.GC()
		}
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	e.client.Run(context.Background(), faultkit.Load{Workers: 8, Count: 200, Next: func(w, i int) faultkit.Request {
		return faultkit.Request{Body: 64 << 10, N: 64 << 10}
	}})
	base := heap()
	reqs := scale(1000, 100000)
	keys := scale(4000, 1000000)
	e.client.Run(context.Background(), faultkit.Load{Workers: 8, Count: reqs, Next: func(w, i int) faultkit.Request {
		return faultkit.Request{Body: 64 << 10, N: 64 << 10, Header: http.Header{"X-Key": {fmt.Sprint("k", i)}}}
	}})
	e.client.Run(context.Background(), faultkit.Load{Workers: 8, Count: keys, Next: func(w, i int) faultkit.Request {
		return faultkit.Request{Header: http.Header{"X-Key": {fmt.Sprint("key-", i)}}}
	}})
	after := heap()
	limit := base + base/10 + 4<<20 // 10%, plus slack for the backends' per-ID records
	for _, b := range e.backends {
		b.ResetCounts()
	}
	after2 := heap()
	if after2 > limit {
		t.Errorf("R4: heap %d MiB after %d requests and %d keys, %d MiB before", after2>>20, reqs, keys, base>>20)
	}
	t.Logf("R4: heap %.1f MiB before, %.1f MiB after %d 64 KiB requests and %d distinct keys (%.1f MiB with the test backends' per-ID records)",
		float64(base)/(1<<20), float64(after2)/(1<<20), reqs, keys, float64(after)/(1<<20))
}
