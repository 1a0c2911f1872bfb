package lb_test

// Proxy tests of retries: a dead backend costs no client error, bodies are
// sent again only when nothing was sent, attempts go to different
// backends, RetryPolicy.Statuses and Timeout, and consistent hashing keeps
// the key on a retry.

import (
	"context"
	"crypto/sha256"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
)

// payloadSize is the size of the body payload answers.
const payloadSize = 16 << 10

// payloadFor is the body payload answers to the request with the given id.
func payloadFor(id string) []byte {
	h := fnv.New64a()
	io.WriteString(h, id)
	return pseudoRandom(payloadSize, h.Sum64())
}

// payload answers with a body determined by the request id.
func payload(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		w.Write(payloadFor(r.Header.Get(reqIDHeader)))
	}
}

// TestDeadBackendZeroErrors: with one backend of three refusing
// connections, 300 GETs from 10 clients all succeed, each with its own
// body whole, and each reaches exactly one live backend once.
func TestDeadBackendZeroErrors(t *testing.T) {
	t.Parallel()
	a := startUpstream(t, "a", payload("a"))
	c := startUpstream(t, "c", payload("c"))
	pool, _ := poolOf(t, a.url, refusingURL(t), c.url)
	g := startGateway(t, pool, lb.RoundRobin())
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		errs   []string
		served = map[string]int{}
	)
	for w := range 10 {
		wg.Go(func() {
			for i := range 30 {
				id := fmt.Sprintf("dead-%d-%d", w, i)
				r, err := g.do(context.Background(), http.MethodGet, "/", id, nil, nil)
				mu.Lock()
				switch {
				case err != nil:
					errs = append(errs, err.Error())
				case r.status != http.StatusOK:
					errs = append(errs, fmt.Sprintf("%s: status %d", id, r.status))
				case string(r.body) != string(payloadFor(id)):
					errs = append(errs, fmt.Sprintf("%s: body of %d bytes differs from the backend's", id, len(r.body)))
				default:
					served[r.header.Get("X-Backend")]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of 300 requests failed with a dead backend in the pool; first: %s", len(errs), errs[0])
	}
	if served["a"]+served["c"] != 300 {
		t.Errorf("served %v; want 300 by a and c", served)
	}
	for w := range 10 {
		for i := range 30 {
			id := fmt.Sprintf("dead-%d-%d", w, i)
			if n := a.hits(id) + c.hits(id); n != 1 {
				t.Fatalf("request %s reached the live backends %d times; want 1", id, n)
			}
		}
	}
}

// sendBody sends a request with a body and returns the answer.
func sendBody(t *testing.T, g *gateway, method, id string, body []byte, hdr http.Header) outcome {
	t.Helper()
	r, err := g.do(context.Background(), method, "/upload", id, body, hdr)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	return r
}

// checkBody fails the test unless b got the request id once with exactly
// body.
func checkBody(t *testing.T, b *upstream, id string, body []byte) {
	t.Helper()
	s := b.get(t, id)
	if s.bodyErr != nil || s.bodyLen != len(body) || s.bodySum != sha256.Sum256(body) {
		t.Errorf("backend %s got a body of %d bytes (read error %v) that differs from the %d sent",
			b.name, s.bodyLen, s.bodyErr, len(body))
	}
}

// TestPostRetriedOnlyWhenNothingSent: a request is sent again only if no
// byte of it reached a backend, or if it is idempotent and its body was
// kept; what is retried arrives byte for byte (reliability.md F3).
func TestPostRetriedOnlyWhenNothingSent(t *testing.T) {
	t.Parallel()
	for _, size := range []int{1 << 10, 1 << 20, 3 << 20} {
		t.Run(fmt.Sprintf("dial refused, POST of %d bytes", size), func(t *testing.T) {
			t.Parallel()
			live := startUpstream(t, "live", nil)
			other := startUpstream(t, "other", nil)
			pool, _ := poolOf(t, refusingURL(t), live.url, other.url)
			g := startGateway(t, pool, lb.RoundRobin())
			body := pseudoRandom(size, uint64(size))
			r := sendBody(t, g, http.MethodPost, "post-1", body, nil)
			if r.status != http.StatusOK || string(r.body) != "live|post-1" {
				t.Fatalf("status %d, body %q; want 200 from live", r.status, r.body)
			}
			checkBody(t, live, "post-1", body)
			if n := other.hits("post-1"); n != 0 {
				t.Errorf("other backend saw the POST %d times; want 0", n)
			}
		})
	}

	for _, tc := range []struct {
		name   string
		bad    http.HandlerFunc
		method string
		hdr    http.Header
	}{
		{"POST, backend hangs up after reading it", hangup, http.MethodPost, nil},
		{"POST, backend resets after reading it", reset, http.MethodPost, nil},
		{"PATCH, backend hangs up after reading it", hangup, http.MethodPatch, nil},
		{"POST with Idempotency-Key", hangup, http.MethodPost, http.Header{"Idempotency-Key": {"k-1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bad := startUpstream(t, "bad", tc.bad)
			good := startUpstream(t, "good", nil)
			pool, bes := poolOf(t, bad.url, good.url)
			g := startGateway(t, pool, lb.RoundRobin())
			body := pseudoRandom(64<<10, 7)
			r := sendBody(t, g, tc.method, "once", body, tc.hdr)
			if r.status != http.StatusBadGateway {
				t.Errorf("status %d, body %q; want 502", r.status, r.body)
			}
			checkBody(t, bad, "once", body)
			if n := good.hits("once"); n != 0 {
				t.Errorf("a %s that reached a backend was sent again: good saw it %d times", tc.method, n)
			}
			for _, be := range bes {
				eventually(t, "in-flight counts back to 0", func() bool { return be.Active() == 0 })
			}
		})
	}

	t.Run("idempotent PUT sent then failed is retried whole", func(t *testing.T) {
		t.Parallel()
		bad := startUpstream(t, "bad", hangup)
		good := startUpstream(t, "good", nil)
		pool, _ := poolOf(t, bad.url, good.url)
		g := startGateway(t, pool, lb.RoundRobin())
		body := pseudoRandom(256<<10, 11)
		r := sendBody(t, g, http.MethodPut, "put", body, nil)
		if r.status != http.StatusOK || string(r.body) != "good|put" {
			t.Fatalf("status %d, body %q; want 200 from good", r.status, r.body)
		}
		checkBody(t, bad, "put", body)
		checkBody(t, good, "put", body)
	})

	t.Run("PUT larger than BodyBuffer is not retried once sent", func(t *testing.T) {
		t.Parallel()
		bad := startUpstream(t, "bad", hangup)
		good := startUpstream(t, "good", nil)
		pool, _ := poolOf(t, bad.url, good.url)
		g := startGateway(t, pool, lb.RoundRobin(), lb.WithRetry(lb.RetryPolicy{BodyBuffer: 4 << 10}))
		body := pseudoRandom(64<<10, 13)
		r := sendBody(t, g, http.MethodPut, "big-put", body, nil)
		if r.status != http.StatusBadGateway {
			t.Errorf("status %d; want 502", r.status)
		}
		checkBody(t, bad, "big-put", body)
		if n := good.hits("big-put"); n != 0 {
			t.Errorf("PUT whose body outgrew the buffer was sent again (%d times)", n)
		}
	})

	t.Run("PUT larger than BodyBuffer is retried after a refused dial", func(t *testing.T) {
		t.Parallel()
		good := startUpstream(t, "good", nil)
		pool, _ := poolOf(t, refusingURL(t), good.url)
		g := startGateway(t, pool, lb.RoundRobin(), lb.WithRetry(lb.RetryPolicy{BodyBuffer: 4 << 10}))
		body := pseudoRandom(64<<10, 17)
		if r := sendBody(t, g, http.MethodPut, "big-put", body, nil); r.status != http.StatusOK {
			t.Fatalf("status %d; want 200", r.status)
		}
		checkBody(t, good, "big-put", body)
	})

	t.Run("NonIdempotent opt-in retries a sent POST whole", func(t *testing.T) {
		t.Parallel()
		bad := startUpstream(t, "bad", hangup)
		good := startUpstream(t, "good", nil)
		pool, _ := poolOf(t, bad.url, good.url)
		g := startGateway(t, pool, lb.RoundRobin(), lb.WithRetry(lb.RetryPolicy{NonIdempotent: true}))
		body := pseudoRandom(32<<10, 19)
		if r := sendBody(t, g, http.MethodPost, "opt-in", body, nil); r.status != http.StatusOK {
			t.Fatalf("status %d; want 200", r.status)
		}
		checkBody(t, bad, "opt-in", body)
		checkBody(t, good, "opt-in", body)
	})
}

// TestRetryGoesToDifferentBackends: each attempt of a request goes to a
// backend it has not tried, up to Tries attempts and never more than the
// pool holds.
func TestRetryGoesToDifferentBackends(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		backends int
		policy   *lb.RetryPolicy
		want     int
	}{
		{"default tries", 5, nil, 3},
		{"tries 1 disables retries", 5, &lb.RetryPolicy{Tries: 1}, 1},
		{"tries 2", 5, &lb.RetryPolicy{Tries: 2}, 2},
		{"tries above pool size", 5, &lb.RetryPolicy{Tries: 10}, 5},
		{"default tries, pool of 2", 2, nil, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var ups []*upstream
			for i := range tc.backends {
				ups = append(ups, startUpstream(t, fmt.Sprint("bad", i), hangup))
			}
			pool, bes := poolOf(t, urlsOf(ups...)...)
			opts := []lb.Option{lb.WithPassiveHealth(health.Passive{MaxFails: -1})}
			if tc.policy != nil {
				opts = append(opts, lb.WithRetry(*tc.policy))
			}
			g := startGateway(t, pool, lb.RoundRobin(), opts...)
			for req := range 3 {
				id := fmt.Sprint("r", req)
				r := g.mustDo(t, http.MethodGet, "/", id, nil, nil)
				if r.status != http.StatusBadGateway {
					t.Errorf("status %d; want 502", r.status)
				}
				total := 0
				for _, u := range ups {
					n := u.hits(id)
					if n > 1 {
						t.Errorf("backend %s tried %d times for one request; want at most once", u.name, n)
					}
					total += n
				}
				if total != tc.want {
					t.Errorf("request %s made %d attempts; want %d", id, total, tc.want)
				}
			}
			for _, be := range bes {
				eventually(t, "in-flight counts back to 0", func() bool { return be.Active() == 0 })
			}
		})
	}
}

// statusAnswer answers status with headers naming the backend.
func statusAnswer(name string, status int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-From", name)
		w.Header().Set("X-Only-"+name, "1")
		w.WriteHeader(status)
		io.WriteString(w, name)
	}
}

// TestRetryStatuses: with RetryPolicy.Statuses, an idempotent request
// answered with a listed status is tried on another backend; when the
// tries run out the client gets the last answer, with nothing of the
// earlier ones.
func TestRetryStatuses(t *testing.T) {
	t.Parallel()
	pol := lb.WithRetry(lb.RetryPolicy{Statuses: []int{503}})
	type want struct {
		status int
		from   string
		hits   []int
	}
	for _, tc := range []struct {
		name     string
		statuses []int
		method   string
		opts     []lb.Option
		want     want
	}{
		{"GET, all 503", []int{503, 503, 503, 503}, http.MethodGet, []lb.Option{pol}, want{503, "b2", []int{1, 1, 1, 0}}},
		{"GET, 503 then 200", []int{503, 200, 200}, http.MethodGet, []lb.Option{pol}, want{200, "b1", []int{1, 1, 0}}},
		{"GET, pool smaller than tries", []int{503, 503}, http.MethodGet, []lb.Option{pol}, want{503, "b1", []int{1, 1}}},
		{"GET, 500 not listed", []int{500, 200}, http.MethodGet, []lb.Option{pol}, want{500, "b0", []int{1, 0}}},
		{"GET, no Statuses", []int{503, 200}, http.MethodGet, nil, want{503, "b0", []int{1, 0}}},
		{"POST answered 503", []int{503, 200}, http.MethodPost, []lb.Option{pol}, want{503, "b0", []int{1, 0}}},
		{"DELETE, 503 then 200", []int{503, 200}, http.MethodDelete, []lb.Option{pol}, want{200, "b1", []int{1, 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var ups []*upstream
			for i, st := range tc.statuses {
				name := fmt.Sprint("b", i)
				ups = append(ups, startUpstream(t, name, statusAnswer(name, st)))
			}
			pool, bes := poolOf(t, urlsOf(ups...)...)
			g := startGateway(t, pool, lb.RoundRobin(), tc.opts...)
			var body []byte
			if tc.method == http.MethodPost {
				body = []byte("payload")
			}
			r := g.mustDo(t, tc.method, "/", "s", body, nil)
			if r.status != tc.want.status || string(r.body) != tc.want.from {
				t.Errorf("status %d, body %q; want %d from %s", r.status, r.body, tc.want.status, tc.want.from)
			}
			if got := r.header.Values("X-From"); len(got) != 1 || got[0] != tc.want.from {
				t.Errorf("X-From %q; want only %q", got, tc.want.from)
			}
			for _, u := range ups {
				if u.name != tc.want.from && r.header.Get("X-Only-"+u.name) != "" {
					t.Errorf("header of the failed attempt on %s leaked into the answer: %v", u.name, r.header)
				}
			}
			for i, u := range ups {
				if n := u.hits("s"); n != tc.want.hits[i] {
					t.Errorf("backend %s saw the request %d times; want %d", u.name, n, tc.want.hits[i])
				}
			}
			for _, be := range bes {
				eventually(t, "in-flight counts back to 0", func() bool { return be.Active() == 0 })
			}
		})
	}
}

// TestConsistentHashRetryKeepsKey: when a key's backend fails, the retry
// is chosen by the key of the request as the client sent it, so it lands
// on the next backend along the ring (where the key goes when that backend
// is not in the pool), not wherever the first attempt's rewritten URL or
// Host hashes.
func TestConsistentHashRetryKeepsKey(t *testing.T) {
	t.Parallel()
	ups := []*upstream{startUpstream(t, "a", nil), startUpstream(t, "b", nil), startUpstream(t, "c", nil)}
	dead := refusingURL(t) + "/dead"
	hostKey := lb.KeyFunc(func(r *http.Request) string { return r.Host })
	for _, tc := range []struct {
		name string
		key  lb.KeyFunc
		req  func(v string) *http.Request
	}{
		{"PathKey", lb.PathKey(), func(v string) *http.Request {
			r, _ := http.NewRequest(http.MethodGet, "/"+v, nil)
			return r
		}},
		{"QueryKey", lb.QueryKey("u"), func(v string) *http.Request {
			r, _ := http.NewRequest(http.MethodGet, "/?u="+v, nil)
			return r
		}},
		{"Host", hostKey, func(v string) *http.Request {
			r, _ := http.NewRequest(http.MethodGet, "/", nil)
			r.Host = v + ".example"
			return r
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			withDead, _ := poolOf(t, append(urlsOf(ups...), dead+"?d=1")...)
			without, _ := poolOf(t, urlsOf(ups...)...)
			g1 := startGateway(t, withDead, lb.ConsistentHash(tc.key))
			g2 := startGateway(t, without, lb.ConsistentHash(tc.key))
			differ := 0
			for i := range 120 {
				v := fmt.Sprintf("k%03d", i)
				var got [2]string
				for j, g := range []*gateway{g1, g2} {
					r := tc.req(v)
					r.URL.Scheme, r.URL.Host = "http", g.srv.Listener.Addr().String()
					out := g.send(t, r)
					if out.status != http.StatusOK {
						t.Fatalf("status %d", out.status)
					}
					got[j], _, _ = strings.Cut(string(out.body), "|")
				}
				if got[0] != got[1] {
					differ++
					if differ <= 3 {
						t.Errorf("key %s: retried to %s after the dead backend; without it, the ring sends it to %s", v, got[0], got[1])
					}
				}
			}
			if differ > 0 {
				t.Errorf("%d of 120 keys went elsewhere than the next backend on the ring", differ)
			}
		})
	}
}

// TestRetryTimeout: no new attempt starts once RetryPolicy.Timeout has
// passed since the first began.
func TestRetryTimeout(t *testing.T) {
	t.Parallel()
	slowHangup := func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(150 * time.Millisecond)
		hangup(w, r)
	}
	for _, tc := range []struct {
		timeout time.Duration
		want    int
	}{
		{100 * time.Millisecond, 1},
		{time.Minute, 3},
	} {
		t.Run(tc.timeout.String(), func(t *testing.T) {
			t.Parallel()
			var ups []*upstream
			for i := range 3 {
				ups = append(ups, startUpstream(t, fmt.Sprint("s", i), slowHangup))
			}
			pool, _ := poolOf(t, urlsOf(ups...)...)
			g := startGateway(t, pool, lb.RoundRobin(), lb.WithRetry(lb.RetryPolicy{Timeout: tc.timeout}))
			if r := g.mustDo(t, http.MethodGet, "/", "t", nil, nil); r.status != http.StatusBadGateway {
				t.Errorf("status %d; want 502", r.status)
			}
			n := 0
			for _, u := range ups {
				n += u.hits("t")
			}
			if n != tc.want {
				t.Errorf("Timeout %v: %d attempts of 150ms each; want %d", tc.timeout, n, tc.want)
			}
		})
	}
}
