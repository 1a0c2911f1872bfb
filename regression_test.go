package lb_test

import (
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

// A retry must go to a backend the request has not tried, for every
// strategy, including those that pick the same backend for the same
// request (consistent hashing): here without passive health, so the dead
// backend stays in rotation and only the tried set keeps it out.
func TestRetryNeverRepeatsABackend(t *testing.T) {
	strategies := map[string]func() lb.Strategy{
		"rr":        lb.RoundRobin,
		"swrr":      lb.SmoothWeighted,
		"leastconn": lb.LeastConn,
		"hash":      func() lb.Strategy { return lb.ConsistentHash(lb.HeaderKey("X-User")) },
	}
	for name, mk := range strategies {
		t.Run(name, func(t *testing.T) {
			live := startNamed(t, "live", nil)
			dead1 := httptest.NewServer(http.NotFoundHandler())
			dead2 := httptest.NewServer(http.NotFoundHandler())
			d1, d2 := dead1.URL, dead2.URL
			dead1.Close()
			dead2.Close()
			pool, err := lb.NewPool(mustBackend(t, d1), mustBackend(t, d2), mustBackend(t, live.srv.URL))
			if err != nil {
				t.Fatal(err)
			}
			bal := lb.New(pool, mk())
			defer bal.Close()
			front := httptest.NewServer(bal)
			defer front.Close()
			for i := range 60 {
				req, _ := http.NewRequest("GET", front.URL, nil)
				req.Header.Set("X-User", fmt.Sprint("user-", i))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(body) != "live" {
					t.Fatalf("request %d: %d %q; want 200 from live (3 tries over 2 dead backends and 1 live)", i, resp.StatusCode, body)
				}
			}
			if r := bal.Stats().Retries; r == 0 {
				t.Fatal("no retries counted")
			}
		})
	}
}

// F14 (reliability.md): with every backend answering a retryable status,
// Tries alone lets each request make 3 attempts; a retry budget caps the
// requests retrying at once, so the amplification drops.
func TestRetryBudgetCapsAmplification(t *testing.T) {
	run := func(budget float64) (ratio float64, denied int64) {
		var attempts atomic.Int64
		var members []*lb.Backend
		for i := range 3 {
			nb := startNamed(t, fmt.Sprint("b", i), func(w http.ResponseWriter, r *http.Request) {
				attempts.Add(1)
				time.Sleep(5 * time.Millisecond) // keep many requests in flight at once
				w.WriteHeader(http.StatusServiceUnavailable)
			})
			members = append(members, mustBackend(t, nb.srv.URL))
		}
		pool, _ := lb.NewPool(members...)
		bal := lb.New(pool, lb.RoundRobin(), lb.WithRetry(lb.RetryPolicy{
			Statuses: []int{503}, Budget: budget, MinRetries: 1,
		}))
		defer bal.Close()
		front := httptest.NewServer(bal)
		defer front.Close()
		const clients, per = 16, 10
		var wg sync.WaitGroup
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
		defer client.CloseIdleConnections()
		for range clients {
			wg.Go(func() {
				for range per {
					resp, err := client.Get(front.URL)
					if err != nil {
						t.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusServiceUnavailable {
						t.Errorf("status %d; want the backends' 503", resp.StatusCode)
					}
				}
			})
		}
		wg.Wait()
		return float64(attempts.Load()) / (clients * per), bal.Stats().RetriesDenied
	}
	if r, d := run(0); r != 3 || d != 0 {
		t.Fatalf("without a budget: %.2f attempts per request, %d denied; want exactly 3 and 0", r, d)
	}
	r, d := run(0.1)
	if d == 0 || r > 2.5 {
		t.Fatalf("with Budget 0.1: %.2f attempts per request, %d retries denied; want fewer than 2.5 and some denied", r, d)
	}
	t.Logf("attempts per request with a budget of 10%%: %.2f (%d retries denied)", r, d)
}
