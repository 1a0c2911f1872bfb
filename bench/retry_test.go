package bench

import (
	"errors"
	"net"
	"net/http"
	"sync"
	"testing"

	lb "github.com/tinylb/lb"
)

// failFirstTransport fails the first request it is given as a refused
// connection (which every request may retry) and answers the others.
type failFirstTransport struct {
	mu    sync.Mutex
	hosts []string
}

func (f *failFirstTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	f.hosts = append(f.hosts, r.URL.Host)
	n := len(f.hosts)
	f.mu.Unlock()
	if r.Body != nil {
		r.Body.Close()
	}
	if n == 1 {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	}
	return staticTransport{}.RoundTrip(r)
}

// TestRetryGoesElsewhere guards the allocation-free tried set of the
// request path: a retry must go to another backend than the one that
// failed, for every strategy. Consistent hashing shows it best: the same key
// maps to the same backend unless the picker is told it was tried.
func TestRetryGoesElsewhere(t *testing.T) {
	for _, p := range proxies {
		if p.name == "bare" || p.name == "bare-bp" || p.name == "tinylb-rr-noretry" {
			continue
		}
		for _, key := range []string{"user42", "session-0001", "a"} {
			tr := &failFirstTransport{}
			var s lb.Strategy
			switch p.name {
			case "tinylb-rr":
				s = lb.RoundRobin()
			case "tinylb-swrr":
				s = lb.SmoothWeighted()
			case "tinylb-leastconn":
				s = lb.LeastConn()
			case "tinylb-hash":
				s = lb.ConsistentHash(lb.HeaderKey("X-Key"))
			}
			bes := make([]*lb.Backend, len(backendURLs))
			for i, u := range backendURLs {
				bes[i], _ = lb.NewBackend(u)
			}
			pool, err := lb.NewPool(bes...)
			if err != nil {
				t.Fatal(err)
			}
			bal := lb.New(pool, s, lb.WithTransport(tr))
			c := newClient("small", key)
			ok := c.do(bal)
			bal.Close()
			if !ok {
				t.Errorf("%s key %q: answer %d, attempts to %v", p.name, key, c.w.code, tr.hosts)
				continue
			}
			if len(tr.hosts) != 2 || tr.hosts[0] == tr.hosts[1] {
				t.Errorf("%s key %q: attempts to %v, want two different backends", p.name, key, tr.hosts)
			}
		}
	}
}
