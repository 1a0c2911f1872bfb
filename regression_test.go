package lb_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

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
