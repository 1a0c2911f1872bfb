package reliability

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
	"github.com/tinylb/lb/internal/faultkit"
)

// F12: clients cancel after the backend got their request, or in the
// middle of the body. Each cancel reaches the backend promptly; no
// failure is counted (even with a passive threshold of one failure), no
// backend is marked down, nothing is retried, no counter leaks, and the
// balancer logs the cancels as 499, not as errors.
func TestF12_ClientCancellation(t *testing.T) {
	n := scale(50, 500)
	e := newEnv(t, envConfig{n: 3, opts: []lb.Option{lb.WithPassiveHealth(health.Passive{MaxFails: 1})}})

	var mu sync.Mutex
	arrived := make(map[string]chan struct{})
	for _, b := range e.backends {
		b.OnRequest(func(r *http.Request) {
			mu.Lock()
			ch := arrived[r.Header.Get(faultkit.HeaderID)]
			mu.Unlock()
			if ch != nil {
				close(ch)
			}
		})
	}
	canceledAt := make(map[string]time.Time)
	run := func(kind string, bh faultkit.Behavior, req func(id string) faultkit.Request, cancelOnArrival bool) {
		for _, b := range e.backends {
			b.SetBehavior(bh)
		}
		var wg sync.WaitGroup
		for i := range n {
			id := fmt.Sprintf("f12-%s-%d", kind, i)
			ch := make(chan struct{})
			mu.Lock()
			arrived[id] = ch
			mu.Unlock()
			wg.Go(func() {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				if cancelOnArrival {
					go func() {
						<-ch
						mu.Lock()
						canceledAt[id] = time.Now()
						mu.Unlock()
						cancel()
					}()
				}
				a := e.client.Do(ctx, req(id))
				if a.Canceled {
					mu.Lock()
					if _, ok := canceledAt[id]; !ok {
						canceledAt[id] = time.Now()
					}
					mu.Unlock()
				}
				if a.Err == nil && !a.Canceled {
					t.Errorf("%s: not canceled: %d", id, a.Status)
				}
			})
		}
		wg.Wait()
	}
	run("waiting", faultkit.Behavior{Hang: true}, func(id string) faultkit.Request {
		return faultkit.Request{ID: id, N: 10}
	}, true)
	run("mid-body", faultkit.Behavior{Drip: time.Hour}, func(id string) faultkit.Request {
		return faultkit.Request{ID: id, N: 100, CancelAfter: 1}
	}, false)

	// Every backend handler saw its request canceled, promptly.
	var worst time.Duration
	for id, at := range canceledAt {
		var seen time.Time
		ok := waitFor(t, 3*time.Second, "backend sees cancel of "+id, func() bool {
			for _, b := range e.backends {
				if ts, ok := b.CanceledAt(id); ok {
					seen = ts
					return true
				}
			}
			return false
		})
		if !ok {
			t.Errorf("F12: the backend never saw %s canceled", id)
			continue
		}
		worst = max(worst, seen.Sub(at))
	}
	if len(canceledAt) != 2*n {
		t.Errorf("F12: %d of %d requests were canceled", len(canceledAt), 2*n)
	}
	if worst > time.Second {
		t.Errorf("F12: a cancel took %v to reach the backend (100 ms is the goal)", worst)
	}
	for id := range canceledAt {
		if h := e.hits(id); h != 1 {
			t.Errorf("F12: %s reached the backends %d times (a cancel must not retry)", id, h)
		}
	}
	mustWait(t, 3*time.Second, "attempts settled", func() bool { return e.bal.Stats().Active == 0 })
	st := e.bal.Stats()
	if st.Failures != 0 || st.Retries != 0 || st.Failed != 0 || st.Unavailable != 0 {
		t.Errorf("F12: cancels counted: %d failures, %d retries, %d failed, %d unavailable", st.Failures, st.Retries, st.Failed, st.Unavailable)
	}
	for _, b := range st.Backends {
		if b.State != lb.StateUp {
			t.Errorf("F12: backend %s is %v after client cancels", b.URL, b.State)
		}
	}
	logs := e.logs.String()
	if got := strings.Count(logs, "status=499"); got != n {
		t.Errorf("F12: %d cancels before the answer logged as 499, want %d", got, n)
	}
	if strings.Contains(logs, "level=WARN") || strings.Contains(logs, "level=ERROR") {
		t.Errorf("F12: client cancels logged as failures:\n%s", firstLines(logs, "level=WARN", 5))
	}
	t.Logf("F12: %d cancels before the answer, %d mid-body; slowest cancel reached its backend in %v", n, n, worst)
}

// firstLines returns up to n lines of s containing sub.
func firstLines(s, sub string, n int) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
			if len(out) == n {
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
