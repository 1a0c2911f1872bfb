package lb_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/tinylb/lb"
)

var loadBody = []byte("hello from b1..\n")

// loadTransport answers every request at once from memory, with a load
// report if report is set.
type loadTransport struct{ report bool }

type loadRespBody struct{ bytes.Reader }

func (*loadRespBody) Close() error { return nil }

func (t loadTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	h := http.Header{"Content-Type": {"text/plain"}, "Content-Length": {"16"}}
	if t.report {
		h[loadHeader] = []string{"TEXT cpu_utilization=0.3, rps_fractional=10.0, eps=0.1"}
	}
	body := &loadRespBody{}
	body.Reset(loadBody)
	return &http.Response{StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: body, ContentLength: int64(len(loadBody)), Request: req}, nil
}

// loadSink is a ResponseWriter that keeps nothing.
type loadSink struct{ h http.Header }

func (w *loadSink) Header() http.Header         { return w.h }
func (w *loadSink) WriteHeader(int)             {}
func (w *loadSink) Write(p []byte) (int, error) { return len(p), nil }

// loadServe returns a function serving one request through a balancer over
// two backends with tr and opts.
func loadServe(tb testing.TB, tr http.RoundTripper, opts ...lb.Option) func() {
	pool, _ := poolOf(tb, "http://127.0.0.1:1", "http://127.0.0.1:2")
	bal := lb.New(pool, lb.SmoothWeighted(), append([]lb.Option{lb.WithTransport(tr)}, opts...)...)
	tb.Cleanup(func() { bal.Close() })
	req := httptest.NewRequest(http.MethodGet, "http://front/x", nil)
	w := &loadSink{h: make(http.Header)}
	return func() {
		clear(w.h)
		bal.ServeHTTP(w, req)
	}
}

var loadCases = []struct {
	name   string
	report bool
	opts   []lb.Option
}{
	{"off", true, nil},
	{"on/no-report", false, []lb.Option{lb.WithLoadReports(lb.LoadReports{})}},
	{"on/report", true, []lb.Option{lb.WithLoadReports(lb.LoadReports{})}},
	{"on/report-strip", true, []lb.Option{lb.WithLoadReports(lb.LoadReports{StripHeader: true})}},
	{"measured", true, []lb.Option{lb.WithLoadReports(lb.LoadReports{Measured: true})}},
}

// BenchmarkLoadReports is one request through the balancer on an in-memory
// transport, with and without load reports.
func BenchmarkLoadReports(b *testing.B) {
	for _, c := range loadCases {
		b.Run(c.name, func(b *testing.B) {
			serve := loadServe(b, loadTransport{report: c.report}, c.opts...)
			b.ReportAllocs()
			for b.Loop() {
				serve()
			}
		})
	}
}

// TestLoadReportsAllocs: reading a report in the response path, and
// measuring, cost no allocation: a request allocates as much as it does
// without the option.
func TestLoadReportsAllocs(t *testing.T) {
	allocs := map[string]float64{}
	for _, c := range loadCases {
		serve := loadServe(t, loadTransport{report: c.report}, c.opts...)
		serve()
		allocs[c.name] = testing.AllocsPerRun(200, serve)
	}
	for _, c := range loadCases[1:] {
		assert.LessOrEqual(t, allocs[c.name], allocs["off"], "%s: %v", c.name, allocs)
	}
	t.Logf("allocations per request: %v", allocs)
}
