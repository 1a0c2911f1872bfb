package reliability

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
)

// The hostile-upload scenarios (H8-H10): what a client that announces a
// body and does not send it, or sends it a byte at a time, costs the
// balancer. Each measures heap, goroutines and backend connections while
// the attack is under way and prints them; RELIABILITY.md has the figures
// before and after request buffering and the replay-memory cap.

// uploadRig is a balancer in front of one backend that counts its open
// connections and the requests that reached its handler.
type uploadRig struct {
	front    *front
	bal      *lb.Balancer
	conns    atomic.Int64 // backend connections open now
	reached  atomic.Int64 // requests whose headers reached the backend
	inFront  atomic.Int64 // requests in the balancer's ServeHTTP
	release  chan struct{}
	releaseO sync.Once
}

func newUploadRig(t *testing.T, opts ...lb.Option) *uploadRig {
	t.Helper()
	r := &uploadRig{release: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	backend := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			r.reached.Add(1)
			_, _ = io.Copy(io.Discard, req.Body)
			select {
			case <-r.release:
			case <-req.Context().Done():
			}
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				r.conns.Add(1)
			case http.StateClosed, http.StateHijacked:
				r.conns.Add(-1)
			}
		},
	}
	go backend.Serve(ln)
	t.Cleanup(func() { backend.Close() })
	t.Cleanup(r.unblock)
	p, err := lb.NewPool(mustBackend(t, "http://"+ln.Addr().String()))
	require.NoError(t, err)
	r.bal = lb.New(p, lb.RoundRobin(), opts...)
	t.Cleanup(func() { r.bal.Close() })
	// The README's server timeouts, except ReadTimeout: a slow upload must
	// stay open long enough to be measured.
	r.front = startFront(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.inFront.Add(1)
		defer r.inFront.Add(-1)
		r.bal.ServeHTTP(w, req)
	}), func(s *http.Server) {
		s.ReadHeaderTimeout = 5 * time.Second
		s.IdleTimeout = 30 * time.Second
	})
	return r
}

func (r *uploadRig) unblock() { r.releaseO.Do(func() { close(r.release) }) }

// heapNow is the live heap after a full collection.
func heapNow() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// attackFigures is what one attack cost.
type attackFigures struct {
	clients          int
	heapGrowth       int64 // bytes, live heap during the attack minus before
	goroutineGrowth  int
	backendConns     int64
	backendReached   int64
	unbuffered       int64
	bytesPerClientKB int64
}

func (f attackFigures) String() string {
	return fmt.Sprintf("%d clients: heap +%.1f MiB (%d KiB/client), goroutines +%d, backend conns %d, reached backend %d, unbuffered %d",
		f.clients, float64(f.heapGrowth)/(1<<20), f.bytesPerClientKB, f.goroutineGrowth, f.backendConns, f.backendReached, f.unbuffered)
}

// attack opens n connections to the front, has each send head and then
// body (at most), waits until settled says the attack is in place (or 5 s
// pass), and measures. The connections are closed before it returns.
func (r *uploadRig) attack(t *testing.T, n int, head string, send func(c net.Conn), settled func() bool) attackFigures {
	t.Helper()
	heap0, g0 := heapNow(), goroutines()
	conns := make([]net.Conn, 0, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for range n {
		c, err := net.Dial("tcp", r.front.Addr)
		require.NoError(t, err)
		conns = append(conns, c)
		_, err = io.WriteString(c, head)
		require.NoError(t, err)
		if send != nil {
			wg.Go(func() { send(c) })
		}
	}
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	waitFor(t, 10*time.Second, "the attack in place", settled)
	time.Sleep(200 * time.Millisecond) // let allocations that follow the headers happen
	f := attackFigures{
		clients:         n,
		heapGrowth:      int64(heapNow()) - int64(heap0),
		goroutineGrowth: goroutines() - g0,
		backendConns:    r.conns.Load(),
		backendReached:  r.reached.Load(),
		unbuffered:      r.bal.Stats().Unbuffered,
	}
	f.bytesPerClientKB = f.heapGrowth / int64(n) >> 10
	return f
}

// H8: clients announce a 1 MiB PUT and send no body. The balancer must not
// allocate what was announced, only what arrives.
func TestH8_HeaderOnlyUploads(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opts      []lb.Option
		perClient int64 // KiB
	}{
		// Buffered: the client's connection and handler only.
		{"default", nil, 64},
		// Streamed: a backend connection too (here the in-process
		// backend's side of it as well), but still not the announced body.
		{"no-buffering", []lb.Option{lb.WithRequestBuffering(lb.RequestBuffering{Max: -1})}, 192},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newUploadRig(t, tc.opts...)
			n := scale(200, 2000)
			head := "PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n"
			f := r.attack(t, n, head, nil, func() bool { return r.inFront.Load() == int64(n) })
			t.Logf("H8 %s: %v", tc.name, f)
			assert.Less(t, f.bytesPerClientKB, tc.perClient, "heap per header-only upload: connections and goroutines, not the announced body")
		})
	}
}

// H9: clients send all but the last byte of a 1 MiB PUT. What the balancer
// keeps of their bodies (for buffering or replay) is bounded by
// WithBodyMemory, however many there are; past it bodies stream.
func TestH9_ReplayMemoryCap(t *testing.T) {
	const size = 1 << 20
	const capBytes = 32 << 20
	for _, tc := range []struct {
		name string
		opts []lb.Option
	}{
		{"buffering", []lb.Option{lb.WithBodyMemory(capBytes)}},
		{"replay-only", []lb.Option{lb.WithBodyMemory(capBytes), lb.WithRequestBuffering(lb.RequestBuffering{Max: -1})}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newUploadRig(t, tc.opts...)
			n := scale(100, 2000)
			var sent atomic.Int64
			head := fmt.Sprintf("PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", size)
			body := strings.Repeat("x", size-1)
			f := r.attack(t, n, head, func(c net.Conn) {
				if _, err := io.WriteString(c, body); err == nil {
					sent.Add(1)
				}
			}, func() bool { return sent.Load() == int64(n) })
			t.Logf("H9 %s (cap %d MiB): %v", tc.name, capBytes>>20, f)
			assert.Less(t, f.heapGrowth, int64(capBytes+n*(128<<10)), "kept bytes stay under the cap (plus per-connection overhead)")
			assert.Positive(t, f.unbuffered, "requests past the cap are counted in Stats.Unbuffered")
		})
	}
}

// H10: R.U.D.Y. slow POSTs (a byte every 50 ms). With request buffering
// they wait in the balancer, not on backend connections.
func TestH10_SlowUploadsDoNotPinBackends(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opts      []lb.Option
		wantConns func(n int) int64
	}{
		{"default", nil, func(int) int64 { return 0 }},
		{"no-buffering", []lb.Option{lb.WithRequestBuffering(lb.RequestBuffering{Max: -1})}, func(n int) int64 { return int64(n) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newUploadRig(t, tc.opts...)
			n := scale(100, 500)
			var started atomic.Int64
			head := "POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
			f := r.attack(t, n, head, func(c net.Conn) {
				started.Add(1)
				for range 1000 {
					if _, err := c.Write([]byte{'x'}); err != nil {
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}, func() bool {
				return r.inFront.Load() == int64(n) && (tc.wantConns(n) == 0 || r.reached.Load() == int64(n))
			})
			t.Logf("H10 %s: %v", tc.name, f)
			assert.Equal(t, tc.wantConns(n), f.backendConns, "backend connections held by slow uploads")
		})
	}
}
