package reliability

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
	"github.com/tinylb/lb/internal/faultkit"
)

// F2: the backend sends the headers and 40% of the body, then resets. The
// client gets an error after exactly the bytes the backend sent, never a
// complete-looking 200; the request is not retried and no 502 follows the
// headers; http.ErrAbortHandler reaches the server; the failure counts
// once.
func TestF2_KilledMidResponse(t *testing.T) {
	const size = 100000
	for _, tc := range []struct {
		name  string
		setup func(b *faultkit.Backend)
		req   faultkit.Request
		sent  int64 // body bytes the backend sent; -1: unknown (a prefix)
	}{
		{
			name:  "content-length",
			setup: func(b *faultkit.Backend) { b.SetBehavior(faultkit.Behavior{ResetAfterFraction: 0.4}) },
			req:   faultkit.Request{N: size},
			sent:  size * 4 / 10,
		},
		{
			name:  "chunked",
			setup: func(b *faultkit.Backend) { b.SetFault(faultkit.Fault{ResetAfterWrite: 40000}) },
			req:   faultkit.Request{N: size, Stream: true},
			sent:  -1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envConfig{n: 2, opts: []lb.Option{lb.WithPassiveHealth(health.Passive{MaxFails: 100})}})
			a, b := e.backends[0], e.backends[1]
			tc.setup(a)
			tc.setup(b)
			for i := range 4 {
				r := tc.req
				r.ID = fmt.Sprintf("f2-%s-%d", tc.name, i)
				at := e.do(r)
				if at.Status != http.StatusOK || at.Err == nil {
					t.Errorf("%s: status %d err %v; want 200 then an error", r.ID, at.Status, at.Err)
				}
				if at.BodyOK || at.Breach() != "" {
					t.Errorf("%s: complete-looking answer: %s", r.ID, at.Breach())
				}
				if tc.sent >= 0 && at.Received != tc.sent {
					t.Errorf("%s: client got %d bytes of the %d the backend sent", r.ID, at.Received, tc.sent)
				}
				if tc.sent < 0 && (at.Received == 0 || at.Received >= size) {
					t.Errorf("%s: client got %d bytes", r.ID, at.Received)
				}
				if h := e.hits(r.ID); h != 1 {
					t.Errorf("%s reached the backends %d times; want 1 (no retry once headers are out)", r.ID, h)
				}
			}
			aborts := 0
			for _, p := range e.front.Panics() {
				if isAbort(p) {
					aborts++
				} else {
					t.Errorf("handler panicked with %v, want http.ErrAbortHandler", p)
				}
			}
			if aborts != 4 {
				t.Errorf("%d of 4 cut responses panicked with http.ErrAbortHandler", aborts)
			}
			mustWait(t, 2e9, "attempts settled", func() bool { return e.bal.Stats().Active == 0 })
			st := e.bal.Stats()
			if st.Failures != 4 || st.Requests != 4 || st.Retries != 0 {
				t.Errorf("stats: %d requests, %d failures, %d retries; want 4, 4 (each cut counts once), 0", st.Requests, st.Failures, st.Retries)
			}
			if st.Failed != 0 {
				t.Errorf("%d requests answered 502/504 after their headers were out", st.Failed)
			}
		})
	}
}
