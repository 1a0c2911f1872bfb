package reliability

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
	"github.com/tinylb/lb/internal/faultkit"
)

// F15: user hooks that panic. The process survives (the server recovers
// the request's panic), counters and connections don't leak,
// http.ErrAbortHandler comes through as itself (never turned into a 500),
// and panics in the balancer's own goroutines are recovered.
func TestF15_PanickingHooks(t *testing.T) {
	visible := func(t *testing.T, a faultkit.Attempt) {
		t.Helper()
		if a.Err == nil && a.Status/100 != 5 {
			t.Errorf("F15: a request whose hook panicked got %d without error", a.Status)
		}
		if a.Status == http.StatusInternalServerError {
			t.Errorf("F15: a panic became a 500")
		}
	}
	t.Run("ModifyResponse", func(t *testing.T) {
		for _, v := range []any{"boom", http.ErrAbortHandler} {
			e := newEnv(t, envConfig{n: 2, opts: []lb.Option{lb.WithModifyResponse(func(*http.Response) error { panic(v) })}})
			for range 10 {
				visible(t, e.do(faultkit.Request{N: 100}))
				visible(t, e.do(faultkit.Request{N: 100 << 10, Stream: true}))
			}
			ps := e.front.Panics()
			if len(ps) != 20 {
				t.Errorf("F15: %d panics reached the server, want 20", len(ps))
			}
			for _, p := range ps {
				if v == http.ErrAbortHandler && !isAbort(p) {
					t.Errorf("F15: http.ErrAbortHandler came through as %v", p)
				}
			}
			e.assertClean()
			// Bodies closed: the backends' connections are idle again.
			mustWait(t, 2*time.Second, "backend connections idle", func() bool {
				for _, b := range e.backends {
					if b.InFlight() != 0 {
						return false
					}
				}
				return true
			})
		}
	})
	t.Run("ErrorHandler", func(t *testing.T) {
		e := newEnv(t, envConfig{n: 1, opts: []lb.Option{lb.WithErrorHandler(func(http.ResponseWriter, *http.Request, error) { panic("boom") })}})
		e.backends[0].Kill()
		for range 10 {
			visible(t, e.do(faultkit.Request{N: 1}))
		}
		if len(e.front.Panics()) != 10 {
			t.Errorf("F15: %d panics", len(e.front.Panics()))
		}
	})
	t.Run("KeyFunc", func(t *testing.T) {
		var mu sync.Mutex
		calls := map[string]int{}
		key := func(r *http.Request) string {
			id := r.Header.Get(faultkit.HeaderID)
			mu.Lock()
			calls[id]++
			n := calls[id]
			mu.Unlock()
			switch {
			case id == "always":
				panic("key boom")
			case n > 1: // panics on the retry, with an answer held
				panic("key boom on retry")
			}
			return id
		}
		e := newEnv(t, envConfig{n: 2, strategy: lb.ConsistentHash(key), opts: []lb.Option{lb.WithRetry(lb.RetryPolicy{Statuses: []int{503}})}})
		visible(t, e.do(faultkit.Request{ID: "always", N: 1}))
		for _, b := range e.backends {
			b.SetBehavior(faultkit.Behavior{Status: 503})
		}
		for i := range 10 {
			visible(t, e.do(faultkit.Request{ID: fmt.Sprint("retry-", i), N: 1}))
		}
		// assertClean (at cleanup) checks the in-flight counters: the
		// response held for the retry must have been closed.
	})
	t.Run("events function", func(t *testing.T) {
		var got atomic.Int64
		e := newEnv(t, envConfig{n: 2, opts: []lb.Option{lb.WithEvents(func(ev lb.Event) {
			if got.Add(1) == 1 {
				panic("events boom")
			}
		})}})
		for i := range 3 {
			if err := e.pool.SetMaintenance(e.backends[0].URL, i%2 == 0); err != nil {
				t.Fatal(err)
			}
		}
		mustWait(t, 2*time.Second, "events after a panicking one", func() bool { return got.Load() >= 3 })
		if a := e.do(faultkit.Request{N: 1}); !a.OK() {
			t.Errorf("F15: %+v", a)
		}
	})
	t.Run("health checker", func(t *testing.T) {
		var n atomic.Int64
		c := &panicCheck{n: &n}
		e := newEnv(t, envConfig{n: 2, opts: []lb.Option{lb.WithHealthCheck(c)}})
		mustWait(t, 3*time.Second, "probing goes on after panics", func() bool { return n.Load() >= 10 })
		// A panicking check counts as failed: the backend goes down.
		mustWait(t, 3*time.Second, "backends down", func() bool { return e.stat(e.backends[0].URL).State == lb.StateDown })
	})
}

type panicCheck struct{ n *atomic.Int64 }

func (c *panicCheck) Schedule() health.Schedule {
	return health.Schedule{Interval: 10 * time.Millisecond, Timeout: 5 * time.Millisecond, Fall: 2, Jitter: -1}
}

func (c *panicCheck) Check(context.Context, *url.URL) error {
	c.n.Add(1)
	panic(errors.New("check boom"))
}
