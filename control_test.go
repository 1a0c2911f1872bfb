package lb_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tinylb/lb"
)

// namedBackend is an httptest backend that answers its name and counts
// the requests it got.
type namedBackend struct {
	name string
	srv  *httptest.Server
	hits atomic.Int64
}

func startNamed(t *testing.T, name string, h http.HandlerFunc) *namedBackend {
	t.Helper()
	nb := &namedBackend{name: name}
	nb.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nb.hits.Add(1)
		if h != nil {
			h(w, r)
			return
		}
		io.WriteString(w, name)
	}))
	t.Cleanup(nb.srv.Close)
	return nb
}

func mustBackend(t *testing.T, rawURL string, opts ...lb.BackendOption) *lb.Backend {
	t.Helper()
	b, err := lb.NewBackend(rawURL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// getAll sends n GETs through url from c clients and returns the number
// of failed ones (transport errors or non-200).
func getAll(url string, clients, n int) int64 {
	var failed atomic.Int64
	var wg sync.WaitGroup
	per := n / clients
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	defer client.CloseIdleConnections()
	for range clients {
		wg.Go(func() {
			for range per {
				resp, err := client.Get(url)
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return failed.Load()
}

func TestDrainWaitsForLastInFlightRequest(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 4)
	slow := startNamed(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		io.WriteString(w, "slow")
	})
	other := startNamed(t, "other", nil)
	pool, err := lb.NewPool(mustBackend(t, slow.srv.URL), mustBackend(t, other.srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	bal := lb.New(pool, lb.RoundRobin())
	defer bal.Close()
	front := httptest.NewServer(bal)
	defer front.Close()
	var wg sync.WaitGroup
	// If the test fails early, let the held requests end, or closing the
	// servers would wait for them forever.
	defer func() {
		for {
			select {
			case release <- struct{}{}:
			case <-time.After(100 * time.Millisecond):
				wg.Wait()
				return
			}
		}
	}()

	// Two requests in flight on the slow backend.
	for range 2 {
		wg.Go(func() {
			for {
				resp, err := http.Get(front.URL)
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) == "slow" {
					return
				}
			}
		})
	}
	<-entered
	<-entered

	drained := make(chan error, 1)
	go func() { drained <- pool.Drain(context.Background(), slow.srv.URL) }()
	// Drain runs in its own goroutine: wait until it has taken effect.
	for statsOf(bal, slow.srv.URL).State != lb.StateDraining {
		time.Sleep(time.Millisecond)
	}

	// While draining, new requests all go to the other backend.
	hitsBefore := slow.hits.Load()
	if failed := getAll(front.URL, 4, 40); failed != 0 {
		t.Fatalf("%d requests failed while draining", failed)
	}
	if got := slow.hits.Load(); got != hitsBefore {
		t.Fatalf("draining backend got %d new requests", got-hitsBefore)
	}
	select {
	case err := <-drained:
		t.Fatalf("Drain returned %v with 2 requests in flight", err)
	default:
	}
	st := statsOf(bal, slow.srv.URL)
	if st.State != lb.StateDraining || st.Active != 2 {
		t.Fatalf("stats while draining: state %v active %d; want draining, 2", st.State, st.Active)
	}

	release <- struct{}{} // first request ends
	select {
	case err := <-drained:
		t.Fatalf("Drain returned %v with 1 request in flight", err)
	case <-time.After(20 * time.Millisecond):
	}
	release <- struct{}{} // the last one ends
	if err := <-drained; err != nil {
		t.Fatalf("Drain: %v", err)
	}
	wg.Wait()
	if a := statsOf(bal, slow.srv.URL).Active; a != 0 {
		t.Fatalf("active after drain = %d; want 0", a)
	}
	if err := pool.Remove(slow.srv.URL); err != nil {
		t.Fatal(err)
	}
}

func TestDrainContextEnds(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	entered := make(chan struct{})
	be := startNamed(t, "b", func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-block
	})
	pool, _ := lb.NewPool(mustBackend(t, be.srv.URL))
	bal := lb.New(pool, lb.RoundRobin())
	defer bal.Close()
	front := httptest.NewServer(bal)
	defer front.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", front.URL, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer dcancel()
	if err := pool.Drain(dctx, be.srv.URL); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain = %v; want DeadlineExceeded", err)
	}
	cancel()
	if err := pool.Drain(context.Background(), "http://127.0.0.1:1"); !errors.Is(err, lb.ErrUnknownBackend) {
		t.Fatalf("Drain(unknown) = %v; want ErrUnknownBackend", err)
	}
}

func statsOf(bal *lb.Balancer, rawURL string) lb.BackendStats {
	for _, s := range bal.Stats().Backends {
		if s.URL == rawURL {
			return s
		}
	}
	return lb.BackendStats{}
}

func TestMaintenanceAndWeightUnderLoad(t *testing.T) {
	var bs []*namedBackend
	var members []*lb.Backend
	for i := range 3 {
		nb := startNamed(t, fmt.Sprint("b", i), nil)
		bs = append(bs, nb)
		members = append(members, mustBackend(t, nb.srv.URL))
	}
	pool, _ := lb.NewPool(members...)
	bal := lb.New(pool, lb.SmoothWeighted())
	defer bal.Close()
	front := httptest.NewServer(bal)
	defer front.Close()

	stop := make(chan struct{})
	var failed atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			failed.Add(getAll(front.URL, 8, 80))
		}
	})
	for i := range 20 {
		u := bs[i%3].srv.URL
		if err := pool.SetMaintenance(u, true); err != nil {
			t.Fatal(err)
		}
		if err := pool.SetWeight(bs[(i+1)%3].srv.URL, 1+i%5); err != nil {
			t.Fatal(err)
		}
		if err := pool.SetMaintenance(u, false); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if f := failed.Load(); f != 0 {
		t.Fatalf("%d requests failed during runtime changes", f)
	}
	if err := pool.SetWeight(bs[0].srv.URL, 0); !errors.Is(err, lb.ErrInvalidBackend) {
		t.Fatalf("SetWeight(0) = %v; want ErrInvalidBackend", err)
	}

	// Maintenance wins over health: the backend gets nothing until undone.
	if err := pool.SetMaintenance(bs[0].srv.URL, true); err != nil {
		t.Fatal(err)
	}
	before := bs[0].hits.Load()
	if f := getAll(front.URL, 2, 20); f != 0 {
		t.Fatalf("%d failed", f)
	}
	if bs[0].hits.Load() != before {
		t.Fatal("backend in maintenance got requests")
	}
	if st := statsOf(bal, bs[0].srv.URL); st.State != lb.StateMaintenance {
		t.Fatalf("state = %v; want maintenance", st.State)
	}
}

func TestSetWeightKeepsSmoothSequence(t *testing.T) {
	var urls []string
	var members []*lb.Backend
	for i := range 3 {
		nb := startNamed(t, string(rune('a'+i)), nil)
		urls = append(urls, nb.srv.URL)
		members = append(members, mustBackend(t, nb.srv.URL))
	}
	pool, _ := lb.NewPool(members...)
	bal := lb.New(pool, lb.SmoothWeighted())
	defer bal.Close()
	front := httptest.NewServer(bal)
	defer front.Close()
	seq := func(n int) string {
		var s string
		for range n {
			resp, err := http.Get(front.URL)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			s += string(b)
		}
		return s
	}
	if got := seq(3); got != "abc" {
		t.Fatalf("1/1/1: %q", got)
	}
	// algorithms.md §1: from cw all 0, weights 5/1/1 give a a b a c a a.
	if err := pool.SetWeight(urls[0], 5); err != nil {
		t.Fatal(err)
	}
	if got := seq(14); got != "aabacaaaabacaa" {
		t.Fatalf("after SetWeight(a, 5): %q; want aabacaaaabacaa", got)
	}
}

func TestUpdateKeepsStateOfBackendsThatStay(t *testing.T) {
	a := startNamed(t, "a", nil)
	b := startNamed(t, "b", nil)
	c := startNamed(t, "c", nil)
	ba := mustBackend(t, a.srv.URL)
	bb := mustBackend(t, b.srv.URL)
	pool, _ := lb.NewPool(ba, bb)
	bal := lb.New(pool, lb.RoundRobin())
	defer bal.Close()
	front := httptest.NewServer(bal)
	defer front.Close()
	if f := getAll(front.URL, 2, 20); f != 0 {
		t.Fatal(f)
	}
	reqA := statsOf(bal, a.srv.URL).Requests

	// Discovery says: a (new weight), c. b goes.
	if err := pool.Update(mustBackend(t, a.srv.URL, lb.WithWeight(3)), mustBackend(t, c.srv.URL)); err != nil {
		t.Fatal(err)
	}
	got := pool.Backends()
	if len(got) != 2 || got[0] != ba || got[1].URL().String() != c.srv.URL {
		t.Fatalf("after Update: %v", got)
	}
	if ba.Weight() != 3 {
		t.Fatalf("weight of a = %d; want 3", ba.Weight())
	}
	if r := statsOf(bal, a.srv.URL).Requests; r != reqA {
		t.Fatalf("a's counters reset: %d, was %d", r, reqA)
	}
	hitsB := b.hits.Load()
	if f := getAll(front.URL, 2, 20); f != 0 {
		t.Fatal(f)
	}
	if b.hits.Load() != hitsB {
		t.Fatal("removed backend got requests after Update returned")
	}
	if c.hits.Load() == 0 {
		t.Fatal("added backend got no requests")
	}
	// Invalid updates change nothing.
	if err := pool.Update(mustBackend(t, a.srv.URL), mustBackend(t, a.srv.URL)); !errors.Is(err, lb.ErrDuplicateBackend) {
		t.Fatalf("duplicate Update = %v", err)
	}
	if err := pool.Update(nil); !errors.Is(err, lb.ErrInvalidBackend) {
		t.Fatalf("nil Update = %v", err)
	}
	if len(pool.Backends()) != 2 {
		t.Fatal("failed Update changed the pool")
	}
}

func TestEventsAttemptRetryDrained(t *testing.T) {
	good := startNamed(t, "good", nil)
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	var mu sync.Mutex
	var got []lb.Event
	pool, _ := lb.NewPool(mustBackend(t, deadURL), mustBackend(t, good.srv.URL))
	bal := lb.New(pool, lb.RoundRobin(), lb.WithEvents(func(ev lb.Event) {
		mu.Lock()
		got = append(got, ev)
		mu.Unlock()
	}))
	front := httptest.NewServer(bal)
	defer front.Close()
	if f := getAll(front.URL, 1, 2); f != 0 {
		t.Fatalf("%d failed", f)
	}
	if err := pool.Drain(context.Background(), good.srv.URL); err != nil {
		t.Fatal(err)
	}
	bal.Close() // delivers what is queued
	mu.Lock()
	defer mu.Unlock()
	count := map[lb.EventKind]int{}
	for _, ev := range got {
		count[ev.Kind]++
		switch ev.Kind {
		case lb.EventRetry:
			if ev.Backend.URL().String() != deadURL || ev.Err == nil {
				t.Errorf("retry event %+v; want the dead backend with its error", ev)
			}
		case lb.EventStateChanged:
			if ev.Backend.URL().String() == deadURL && (ev.From != lb.StateUp || ev.To != lb.StateEjected) {
				t.Errorf("state event %+v; want the dead backend ejected", ev)
			}
		case lb.EventAttemptDone:
			if ev.Backend.URL().String() == good.srv.URL && (ev.Status != 200 || ev.Failed) {
				t.Errorf("attempt event %+v; want status 200, not failed", ev)
			}
			if ev.Backend.URL().String() == deadURL && (!ev.Failed || ev.Err == nil) {
				t.Errorf("attempt event %+v; want a failure", ev)
			}
		}
	}
	// Round robin sends the first request to the dead backend, which is
	// retried on the good one, and the second to the good one: a retry
	// takes no turn of the rotation. The failure ejects the dead backend
	// (passive health is on by default) and the drain changes the good
	// one's state.
	if count[lb.EventAttemptDone] != 3 || count[lb.EventRetry] != 1 || count[lb.EventDrained] != 1 ||
		count[lb.EventStateChanged] != 2 {
		t.Fatalf("event counts %v; want 3 attempt-done, 1 retry, 1 drained, 2 state-changed", count)
	}
}
