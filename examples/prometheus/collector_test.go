package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tinylb/lb"
)

// testBalancer is a balancer over two httptest backends (weights 2 and 1)
// and a client that sends requests through it.
type testBalancer struct {
	bal  *lb.Balancer
	urls []string
	get  func() int // one GET through the balancer; its status
}

func newTestBalancer(t *testing.T) *testBalancer {
	t.Helper()
	var bes []*lb.Backend
	var urls []string
	for i := range 2 {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
		t.Cleanup(srv.Close)
		be, err := lb.NewBackend(srv.URL, lb.WithWeight(2-i))
		if err != nil {
			t.Fatal(err)
		}
		bes, urls = append(bes, be), append(urls, srv.URL)
	}
	pool, err := lb.NewPool(bes...)
	if err != nil {
		t.Fatal(err)
	}
	bal := lb.New(pool, lb.RoundRobin())
	t.Cleanup(func() { bal.Close() })
	front := httptest.NewServer(bal)
	t.Cleanup(front.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr}
	return &testBalancer{bal: bal, urls: urls, get: func() int {
		resp, err := c.Get(front.URL)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}}
}

func TestCollector(t *testing.T) {
	tb := newTestBalancer(t)
	for range 4 {
		if code := tb.get(); code != http.StatusOK {
			t.Fatalf("GET: %d", code)
		}
	}
	if err := tb.bal.Pool().SetMaintenance(tb.urls[1], true); err != nil {
		t.Fatal(err)
	}
	c := NewCollector(tb.bal, nil)
	a, b := tb.urls[0], tb.urls[1]
	expected := fmt.Sprintf(`
# HELP tinylb_backend_requests_total Attempts started on the backend, retries included.
# TYPE tinylb_backend_requests_total counter
tinylb_backend_requests_total{backend=%[1]q} 2
tinylb_backend_requests_total{backend=%[2]q} 2
# HELP tinylb_backend_failures_total Attempts on the backend that counted as failures.
# TYPE tinylb_backend_failures_total counter
tinylb_backend_failures_total{backend=%[1]q} 0
tinylb_backend_failures_total{backend=%[2]q} 0
# HELP tinylb_backend_retries_total Attempts on the backend that retried an earlier attempt.
# TYPE tinylb_backend_retries_total counter
tinylb_backend_retries_total{backend=%[1]q} 0
tinylb_backend_retries_total{backend=%[2]q} 0
# HELP tinylb_backend_active_requests Attempts in flight on the backend, streams and upgraded connections included.
# TYPE tinylb_backend_active_requests gauge
tinylb_backend_active_requests{backend=%[1]q} 0
tinylb_backend_active_requests{backend=%[2]q} 0
# HELP tinylb_backend_up 1 if the backend takes requests (up, slow-start or probing), else 0.
# TYPE tinylb_backend_up gauge
tinylb_backend_up{backend=%[1]q} 1
tinylb_backend_up{backend=%[2]q} 0
# HELP tinylb_backend_weight Configured weight of the backend.
# TYPE tinylb_backend_weight gauge
tinylb_backend_weight{backend=%[1]q} 2
tinylb_backend_weight{backend=%[2]q} 1
# HELP tinylb_backend_effective_weight Weight of the backend in effect now (lower during slow start or after failures).
# TYPE tinylb_backend_effective_weight gauge
tinylb_backend_effective_weight{backend=%[1]q} 2
tinylb_backend_effective_weight{backend=%[2]q} 1
# HELP tinylb_backend_state 1 for the backend's current state, 0 for the others.
# TYPE tinylb_backend_state gauge
tinylb_backend_state{backend=%[1]q,state="closed"} 0
tinylb_backend_state{backend=%[1]q,state="down"} 0
tinylb_backend_state{backend=%[1]q,state="draining"} 0
tinylb_backend_state{backend=%[1]q,state="ejected"} 0
tinylb_backend_state{backend=%[1]q,state="maintenance"} 0
tinylb_backend_state{backend=%[1]q,state="probing"} 0
tinylb_backend_state{backend=%[1]q,state="slow-start"} 0
tinylb_backend_state{backend=%[1]q,state="up"} 1
tinylb_backend_state{backend=%[2]q,state="closed"} 0
tinylb_backend_state{backend=%[2]q,state="down"} 0
tinylb_backend_state{backend=%[2]q,state="draining"} 0
tinylb_backend_state{backend=%[2]q,state="ejected"} 0
tinylb_backend_state{backend=%[2]q,state="maintenance"} 1
tinylb_backend_state{backend=%[2]q,state="probing"} 0
tinylb_backend_state{backend=%[2]q,state="slow-start"} 0
tinylb_backend_state{backend=%[2]q,state="up"} 0
# HELP tinylb_unavailable_total Requests answered 503 because no backend could take them.
# TYPE tinylb_unavailable_total counter
tinylb_unavailable_total 0
# HELP tinylb_failed_total Requests answered 502 or 504 after their attempts failed.
# TYPE tinylb_failed_total counter
tinylb_failed_total 0
`, a, b)
	names := []string{
		"tinylb_backend_requests_total", "tinylb_backend_failures_total", "tinylb_backend_retries_total",
		"tinylb_backend_active_requests", "tinylb_backend_up", "tinylb_backend_weight",
		"tinylb_backend_effective_weight", "tinylb_backend_state", "tinylb_unavailable_total", "tinylb_failed_total",
	}
	if err := testutil.CollectAndCompare(c, strings.NewReader(expected), names...); err != nil {
		t.Error(err)
	}

	// No backend left: the next request is answered 503 and counted.
	if err := tb.bal.Pool().SetMaintenance(a, true); err != nil {
		t.Fatal(err)
	}
	if code := tb.get(); code != http.StatusServiceUnavailable {
		t.Fatalf("GET with every backend in maintenance: %d; want 503", code)
	}
	if err := testutil.CollectAndCompare(c, strings.NewReader(`
# HELP tinylb_unavailable_total Requests answered 503 because no backend could take them.
# TYPE tinylb_unavailable_total counter
tinylb_unavailable_total 1
`), "tinylb_unavailable_total"); err != nil {
		t.Error(err)
	}
}

func TestCollectorLatencyHistogram(t *testing.T) {
	tb := newTestBalancer(t)
	for range 6 {
		tb.get()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(tb.bal, prometheus.Labels{"balancer": "edge"}))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var seen int
	for _, mf := range mfs {
		if mf.GetName() != "tinylb_backend_latency_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			seen++
			h := m.GetHistogram()
			if h.GetSampleCount() != 3 {
				t.Errorf("%v: %d samples; want 3", m.GetLabel(), h.GetSampleCount())
			}
			bs := h.GetBucket()
			if len(bs) != len(lb.LatencyBuckets) {
				t.Fatalf("%d buckets; want %d", len(bs), len(lb.LatencyBuckets))
			}
			var prev uint64
			for i, bk := range bs {
				if bk.GetUpperBound() != lb.LatencyBuckets[i].Seconds() {
					t.Errorf("bucket %d bound %v; want %v", i, bk.GetUpperBound(), lb.LatencyBuckets[i].Seconds())
				}
				if bk.GetCumulativeCount() < prev {
					t.Errorf("bucket %d: count %d below the previous %d: not cumulative", i, bk.GetCumulativeCount(), prev)
				}
				prev = bk.GetCumulativeCount()
			}
			if prev > h.GetSampleCount() {
				t.Errorf("last bucket %d above the sample count %d", prev, h.GetSampleCount())
			}
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			if got := strings.Join(labels, ","); !strings.Contains(got, "balancer=edge") || !strings.Contains(got, "backend=http://127.0.0.1:") {
				t.Errorf("labels %s; want balancer and backend", got)
			}
		}
	}
	if seen != 2 {
		t.Errorf("%d latency histograms; want one per backend", seen)
	}
}

func TestCollectorLint(t *testing.T) {
	tb := newTestBalancer(t)
	tb.get()
	problems, err := testutil.CollectAndLint(NewCollector(tb.bal, nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	if n := testutil.CollectAndCount(NewCollector(tb.bal, nil)); n == 0 {
		t.Error("no metrics collected")
	}
}

func TestRunOnce(t *testing.T) {
	var out bytes.Buffer
	if err := run("127.0.0.1:0", 2, true, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"# TYPE tinylb_backend_requests_total counter",
		"# TYPE tinylb_backend_latency_seconds histogram",
		`tinylb_backend_latency_seconds_bucket{backend="http://127.0.0.1:`,
		"tinylb_unavailable_total 0",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("scrape lacks %q:\n%s", want, out.String())
		}
	}
	var total float64
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "tinylb_backend_requests_total{") {
			var v float64
			fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
			total += v
		}
	}
	if total != 30 {
		t.Errorf("scrape counts %v requests; want the 30 sent", total)
	}
}
