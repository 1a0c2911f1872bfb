package reliability

import (
	"context"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"sync"
	"testing"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
	"github.com/tinylb/lb/internal/faultkit"
)

// traced records, per request ID, each attempt the balancer made and
// whether httptrace saw the request written.
type traced struct {
	base http.RoundTripper
	mu   sync.Mutex
	log  map[string][]tracedAttempt
}

type tracedAttempt struct {
	wrote  bool // WroteRequest fired without error
	reused bool
	err    error
}

func (t *traced) RoundTrip(r *http.Request) (*http.Response, error) {
	var at tracedAttempt
	var mu sync.Mutex
	ctx := httptrace.WithClientTrace(r.Context(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { mu.Lock(); at.reused = i.Reused; mu.Unlock() },
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			mu.Lock()
			at.wrote = at.wrote || i.Err == nil
			mu.Unlock()
		},
	})
	resp, err := t.base.RoundTrip(r.WithContext(ctx))
	mu.Lock()
	at.err = err
	rec := at
	mu.Unlock()
	t.mu.Lock()
	if t.log == nil {
		t.log = make(map[string][]tracedAttempt)
	}
	id := r.Header.Get(faultkit.HeaderID)
	t.log[id] = append(t.log[id], rec)
	t.mu.Unlock()
	return resp, err
}

// F4: backends whose keep-alive connections go stale (an idle timeout of
// 1 ms, or a close after every response without Connection: close). GETs
// never fail; no POST is duplicated; a POST is retried only when nothing
// of it was written.
func TestF4_StaleKeepAlive(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  faultkit.Config
		bh   faultkit.Behavior
	}{
		{name: "idle timeout 1ms", cfg: faultkit.Config{IdleTimeout: time.Millisecond}},
		{name: "close after every response", bh: faultkit.Behavior{CloseAfterResponse: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &traced{}
			// Passive checks off: a POST cut by a stale connection counts as
			// a failure, as in nginx, and would eject both backends; this
			// scenario is about the transport's handling of stale
			// connections.
			e := newEnv(t, envConfig{n: 2, backend: func(int) faultkit.Config { return tc.cfg },
				wrap: func(rt http.RoundTripper) http.RoundTripper { tr.base = rt; return tr },
				opts: []lb.Option{lb.WithPassiveHealth(health.Passive{MaxFails: -1})}})
			for _, b := range e.backends {
				b.SetBehavior(tc.bh)
			}
			e.client.Run(context.Background(), faultkit.Load{Workers: scale(8, 32), Duration: scale(time.Second, 10*time.Second),
				Next: func(w, i int) faultkit.Request {
					if rand.IntN(3) == 0 {
						return faultkit.Request{Body: 1 + rand.Int64N(8<<10), N: 100}
					}
					return faultkit.Request{N: int64(rand.IntN(4 << 10))}
				}})
			as := e.client.Attempts()
			e.checkIntegrity(as)
			var getErr, postErr, posts, retried int
			for _, a := range as {
				if a.Method == http.MethodGet && !a.OK() {
					getErr++
					if getErr < 5 {
						t.Errorf("F4: GET %s failed: %d %v", a.ID, a.Status, a.Err)
					}
				}
				if a.Method != http.MethodPost {
					continue
				}
				posts++
				if !a.OK() {
					postErr++
				}
				tr.mu.Lock()
				log := tr.log[a.ID]
				tr.mu.Unlock()
				if len(log) > 1 {
					retried++
				}
				for i, at := range log[:max(0, len(log)-1)] {
					if at.wrote {
						t.Errorf("F4: POST %s was retried after attempt %d had written it (err %v)", a.ID, i+1, at.err)
					}
				}
			}
			if getErr > 0 {
				t.Errorf("F4: %d GETs failed on stale connections", getErr)
			}
			t.Logf("F4 %s: %d requests, %d POSTs (%d failed visibly, %d retried before anything was written), %d GET errors",
				tc.name, len(as), posts, postErr, retried, getErr)
		})
	}
}
