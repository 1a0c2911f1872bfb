package reliability

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
)

// r8Bound is the most the live heap may grow over R8's measured requests.
// A leak of b bytes per request grows it by about b × r8Requests: with
// 20,000 requests, 96 bytes each make 1.8 MiB, over the bound; anything of
// 53 bytes or more per request fails the check.
const r8Bound = 1 << 20

// r8Requests is how many requests R8 measures, after a warm-up of
// r8Requests/10.
const r8Requests = 20000

// R8: nothing is kept per request. 20,000 requests (70% GET, 30% POST
// with bodies of up to 64 KiB, in both directions) go through a
// balancer to three httptest backends, one of which answers 503 (GETs
// are retried on another backend) and resets one connection in four (an
// error, retried when safe); the live heap after full collections must
// stay within r8Bound of its value after a warm-up. Neither the test nor
// its backends keep anything per request, so the growth is the
// balancer's. No timing is asserted.
func TestR8_HeapBoundedPerRequest(t *testing.T) {
	var served, failed atomic.Int64
	answer := func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		size, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("X-Got", strconv.FormatInt(n, 10))
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.Write(bytes.Repeat([]byte{'x'}, size)) //nolint:errcheck
		served.Add(1)
	}
	var seq atomic.Int64
	failing := func(w http.ResponseWriter, r *http.Request) {
		failed.Add(1)
		if seq.Add(1)%4 == 0 {
			// Reset the connection with no answer: a transport error.
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				if tc, ok := conn.(*net.TCPConn); ok {
					tc.SetLinger(0) //nolint:errcheck
				}
				conn.Close()
			}
			return
		}
		io.Copy(io.Discard, r.Body) //nolint:errcheck
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	var members []*lb.Backend
	for _, h := range []http.HandlerFunc{answer, answer, failing} {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		b, err := lb.NewBackend(srv.URL)
		require.NoError(t, err)
		members = append(members, b)
	}
	pool, err := lb.NewPool(members...)
	require.NoError(t, err)
	tr := lb.NewTransport()
	t.Cleanup(tr.CloseIdleConnections)
	// Passive health off: the failing backend must stay in rotation, so
	// that every request can take the retry path.
	bal := lb.New(pool, lb.RoundRobin(), lb.WithTransport(tr), lb.WithRetry(lb.RetryPolicy{Statuses: []int{503}}),
		lb.WithPassiveHealth(health.Passive{MaxFails: -1}))
	t.Cleanup(func() { bal.Close() })
	front := httptest.NewServer(bal)
	t.Cleanup(front.Close)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true}, Timeout: 30 * time.Second}
	t.Cleanup(client.CloseIdleConnections)

	body := bytes.Repeat([]byte{'b'}, 64<<10)
	var statuses sync.Map // status -> *atomic.Int64; a handful of keys
	run := func(count int) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for next.Add(1) <= int64(count) {
					var req *http.Request
					n := rand.IntN(16 << 10)
					if rand.IntN(10) < 3 {
						req, _ = http.NewRequest(http.MethodPost, fmt.Sprintf("%s/?n=%d", front.URL, n), bytes.NewReader(body[:1+rand.IntN(len(body))]))
					} else {
						req, _ = http.NewRequest(http.MethodGet, fmt.Sprintf("%s/?n=%d", front.URL, n), nil)
					}
					status := 0
					if resp, err := client.Do(req); err == nil {
						io.Copy(io.Discard, resp.Body) //nolint:errcheck
						resp.Body.Close()
						status = resp.StatusCode
					}
					c, _ := statuses.LoadOrStore(status, new(atomic.Int64))
					c.(*atomic.Int64).Add(1)
				}
			})
		}
		wg.Wait()
	}
	heap := func() runtime.MemStats {
		var ms runtime.MemStats
		// Two collections: the first frees what sync.Pools dropped to
		// their victim caches, the second the victims.
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms
	}

	run(r8Requests / 10)
	before := heap()
	run(r8Requests)
	after := heap()

	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	counts := map[int]int64{}
	statuses.Range(func(k, v any) bool { counts[k.(int)] = v.(*atomic.Int64).Load(); return true })
	t.Logf("R8: %d requests (+%d warm-up): statuses %v (0: client error), %d answers, %d attempts on the failing backend; live heap %.2f → %.2f MiB (%+d KiB, %.1f bytes per request; in use %.2f → %.2f MiB)",
		r8Requests, r8Requests/10, counts, served.Load(), failed.Load(),
		float64(before.HeapAlloc)/(1<<20), float64(after.HeapAlloc)/(1<<20), growth>>10, float64(growth)/r8Requests,
		float64(before.HeapInuse)/(1<<20), float64(after.HeapInuse)/(1<<20))
	assert.Greater(t, failed.Load(), int64(r8Requests/10), "the failing backend must see its share, or the retry path is not measured")
	assert.Less(t, growth, int64(r8Bound), "R8: the live heap grew by %d KiB over %d requests (%.0f bytes each): something is kept per request",
		growth>>10, r8Requests, float64(growth)/r8Requests)
}
