package lb_test

import (
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
)

// statusJSON is the part of the status handler's JSON the tests read.
type statusJSON struct {
	Title          string  `json:"title"`
	RefreshSeconds float64 `json:"refresh_seconds"`
	Totals         struct {
		Backends          int      `json:"backends"`
		Serving           int      `json:"serving"`
		Active            int64    `json:"active"`
		Requests          int64    `json:"requests"`
		Failures          int64    `json:"failures"`
		RequestsPerSecond *float64 `json:"requests_per_second"`
		ErrorRate         *float64 `json:"error_rate"`
	} `json:"totals"`
	LatencyBucketsMS []float64 `json:"latency_buckets_ms"`
	Backends         []struct {
		URL               string     `json:"url"`
		Weight            int        `json:"weight"`
		EffectiveWeight   float64    `json:"effective_weight"`
		State             string     `json:"state"`
		Reason            string     `json:"reason"`
		Active            int64      `json:"active"`
		Requests          int64      `json:"requests"`
		Failures          int64      `json:"failures"`
		Retries           int64      `json:"retries"`
		RequestsPerSecond *float64   `json:"requests_per_second"`
		ErrorRate         *float64   `json:"error_rate"`
		LatencyEWMAMS     float64    `json:"latency_ewma_ms"`
		LatencyHistoryMS  []float64  `json:"latency_history_ms"`
		LatencyHistogram  []int64    `json:"latency_histogram"`
		LastCheck         *time.Time `json:"last_check"`
		LastCheckError    string     `json:"last_check_error"`
	} `json:"backends"`
}

// statusSite is a balancer at "/" and its status handler at "/status/"
// behind http.StripPrefix, on one httptest server, with a client that does
// not follow redirects.
type statusSite struct {
	bal  *lb.Balancer
	srv  *httptest.Server
	c    *http.Client
	urls []string // backend URLs
}

// startStatusSite starts n backends (h answers for all of them; nil means
// "ok") and serves a balancer over them with its status page.
func startStatusSite(t *testing.T, n int, h http.HandlerFunc, balOpts []lb.Option, stOpts ...lb.StatusOption) *statusSite {
	t.Helper()
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }
	}
	var urls []string
	var bes []*lb.Backend
	for range n {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		be, err := lb.NewBackend(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		urls = append(urls, srv.URL)
		bes = append(bes, be)
	}
	return serveStatusSite(t, urls, bes, balOpts, stOpts...)
}

func serveStatusSite(t *testing.T, urls []string, bes []*lb.Backend, balOpts []lb.Option, stOpts ...lb.StatusOption) *statusSite {
	t.Helper()
	pool, err := lb.NewPool(bes...)
	if err != nil {
		t.Fatal(err)
	}
	bal := lb.New(pool, lb.RoundRobin(), balOpts...)
	t.Cleanup(func() { bal.Close() })
	mux := http.NewServeMux()
	mux.Handle("/status/", http.StripPrefix("/status", lb.StatusHandler(bal, stOpts...)))
	mux.Handle("/", bal)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &statusSite{bal: bal, srv: srv, c: c, urls: urls}
}

// do sends a request to the site and returns the response with its body
// read.
func (s *statusSite) do(t *testing.T, method, path string, form url.Values, hdr http.Header) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, s.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := s.c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// get sends n GETs through the balancer, each expected to succeed.
func (s *statusSite) get(t *testing.T, n int) {
	t.Helper()
	for range n {
		if resp, body := s.do(t, http.MethodGet, "/", nil, nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("GET through the balancer: %d %q", resp.StatusCode, body)
		}
	}
}

func (s *statusSite) status(t *testing.T, path string) statusJSON {
	t.Helper()
	resp, body := s.do(t, http.MethodGet, path, nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %q", path, resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("GET %s: Content-Type %q", path, ct)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("GET %s: Cache-Control %q, want no-store", path, cc)
	}
	var st statusJSON
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("GET %s: %v in %q", path, err, body)
	}
	return st
}

// stateOf returns the state of the backend with URL u in st.
func statusStateOf(t *testing.T, st statusJSON, u string) string {
	t.Helper()
	for _, b := range st.Backends {
		if b.URL == u {
			return b.State
		}
	}
	t.Fatalf("backend %s not in the status", u)
	return ""
}

// statusPoll polls cond every 5 ms for up to 5 s.
func statusPoll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStatusJSON(t *testing.T) {
	s := startStatusSite(t, 3, nil, nil, lb.WithStatusTitle("edge"), lb.WithStatusRefresh(20*time.Millisecond))
	st := s.status(t, "/status/json")
	if st.Title != "edge" || st.RefreshSeconds != 0.02 {
		t.Errorf("title %q refresh %v; want edge and 0.02", st.Title, st.RefreshSeconds)
	}
	if len(st.Backends) != 3 || st.Totals.Backends != 3 || st.Totals.Serving != 3 {
		t.Fatalf("%d backends (totals %d, serving %d); want 3", len(st.Backends), st.Totals.Backends, st.Totals.Serving)
	}
	if len(st.LatencyBucketsMS) != len(lb.LatencyBuckets) || st.LatencyBucketsMS[0] != 1 {
		t.Errorf("latency_buckets_ms %v", st.LatencyBucketsMS)
	}
	for i, b := range st.Backends {
		if b.URL != s.urls[i] || b.State != "up" || b.Weight != 1 || b.EffectiveWeight != 1 {
			t.Errorf("backend %d: %+v; want %s up with weight 1", i, b, s.urls[i])
		}
		if b.RequestsPerSecond != nil || b.ErrorRate != nil {
			t.Errorf("backend %d: rates %v %v before a second sample; want null", i, b.RequestsPerSecond, b.ErrorRate)
		}
		if b.LastCheck != nil {
			t.Errorf("backend %d: last_check %v without health checks; want null", i, b.LastCheck)
		}
	}

	s.get(t, 30)
	time.Sleep(30 * time.Millisecond)
	st = s.status(t, "/status/?format=json") // the page's own path serves the JSON too
	if st.Totals.Requests != 30 {
		t.Errorf("totals.requests %d; want 30", st.Totals.Requests)
	}
	if r := st.Totals.RequestsPerSecond; r == nil || *r <= 0 {
		t.Errorf("totals.requests_per_second %v; want > 0", r)
	}
	for i, b := range st.Backends {
		if b.Requests != 10 {
			t.Errorf("backend %d: %d requests; want 10", i, b.Requests)
		}
		if b.RequestsPerSecond == nil || *b.RequestsPerSecond <= 0 {
			t.Errorf("backend %d: requests_per_second %v; want > 0", i, b.RequestsPerSecond)
		}
		if b.ErrorRate == nil || *b.ErrorRate != 0 {
			t.Errorf("backend %d: error_rate %v; want 0", i, b.ErrorRate)
		}
		if b.LatencyEWMAMS <= 0 || len(b.LatencyHistoryMS) != 2 {
			t.Errorf("backend %d: latency %v ms, history %v; want > 0 and two samples", i, b.LatencyEWMAMS, b.LatencyHistoryMS)
		}
		var n int64
		for _, c := range b.LatencyHistogram {
			n += c
		}
		if n != 10 || len(b.LatencyHistogram) != len(lb.LatencyBuckets)+1 {
			t.Errorf("backend %d: histogram %v; want 10 attempts in %d buckets", i, b.LatencyHistogram, len(lb.LatencyBuckets)+1)
		}
	}

	// Maintenance shows at once, with its reason.
	if err := s.bal.Pool().SetMaintenance(s.urls[1], true); err != nil {
		t.Fatal(err)
	}
	st = s.status(t, "/status/json")
	if b := st.Backends[1]; b.State != "maintenance" || b.Reason != "maintenance" {
		t.Errorf("after SetMaintenance: state %q reason %q; want maintenance", b.State, b.Reason)
	}
	if st.Totals.Serving != 2 {
		t.Errorf("serving %d after SetMaintenance; want 2", st.Totals.Serving)
	}
}

func TestStatusHistoryIsBounded(t *testing.T) {
	s := startStatusSite(t, 1, nil, nil, lb.WithStatusRefresh(time.Millisecond))
	s.get(t, 1)
	var st statusJSON
	for range 80 {
		time.Sleep(time.Millisecond)
		st = s.status(t, "/status/json")
	}
	if n := len(st.Backends[0].LatencyHistoryMS); n != 60 {
		t.Errorf("latency history of %d samples; want 60", n)
	}
}

func TestStatusErrorRate(t *testing.T) {
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	t.Cleanup(good.Close)
	// bad cuts every connection: a transport error, counted as a failure
	// and retried on good.
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(bad.Close)
	var bes []*lb.Backend
	for _, u := range []string{good.URL, bad.URL} {
		be, err := lb.NewBackend(u)
		if err != nil {
			t.Fatal(err)
		}
		bes = append(bes, be)
	}
	s := serveStatusSite(t, []string{good.URL, bad.URL}, bes, nil, lb.WithStatusRefresh(10*time.Millisecond))
	s.status(t, "/status/json")
	s.get(t, 10)
	time.Sleep(15 * time.Millisecond)
	st := s.status(t, "/status/json")
	g, b := st.Backends[0], st.Backends[1]
	if b.Failures == 0 || b.ErrorRate == nil || *b.ErrorRate != 1 {
		t.Errorf("bad backend: %d failures, error_rate %v; want 1", b.Failures, b.ErrorRate)
	}
	if g.ErrorRate == nil || *g.ErrorRate != 0 || g.Retries == 0 {
		t.Errorf("good backend: error_rate %v, %d retries; want 0 and retries", g.ErrorRate, g.Retries)
	}
	if r := st.Totals.ErrorRate; r == nil || *r <= 0 || *r >= 1 {
		t.Errorf("totals.error_rate %v; want between 0 and 1", r)
	}
}

func TestStatusActiveRequests(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 4)
	s := startStatusSite(t, 1, func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		io.WriteString(w, "ok")
	}, nil)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			resp, err := s.c.Get(s.srv.URL + "/")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	<-entered
	<-entered
	st := s.status(t, "/status/json")
	close(release)
	wg.Wait()
	if st.Backends[0].Active != 2 || st.Totals.Active != 2 {
		t.Errorf("active %d, totals.active %d while two requests are in flight; want 2", st.Backends[0].Active, st.Totals.Active)
	}
	statusPoll(t, "active back to 0", func() bool { return s.status(t, "/status/json").Totals.Active == 0 })
}

func TestStatusHealthCheckDown(t *testing.T) {
	var srvs []*httptest.Server
	var urls []string
	var bes []*lb.Backend
	for range 2 {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
		t.Cleanup(srv.Close)
		be, err := lb.NewBackend(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		srvs, urls, bes = append(srvs, srv), append(urls, srv.URL), append(bes, be)
	}
	check := &health.HTTPCheck{Path: "/", Interval: 10 * time.Millisecond, Fall: 1, Rise: 1, Jitter: -1}
	s := serveStatusSite(t, urls, bes, []lb.Option{lb.WithHealthCheck(check)})
	statusPoll(t, "first health checks", func() bool {
		st := s.status(t, "/status/json")
		return st.Backends[0].LastCheck != nil && st.Backends[1].LastCheck != nil
	})
	srvs[1].Close()
	var st statusJSON
	statusPoll(t, "backend 1 down", func() bool {
		st = s.status(t, "/status/json")
		return statusStateOf(t, st, urls[1]) == "down"
	})
	b := st.Backends[1]
	if b.LastCheckError == "" || !strings.Contains(b.Reason, "health check failed") || b.LastCheck == nil {
		t.Errorf("down backend: reason %q, last check %v error %q; want the failed check", b.Reason, b.LastCheck, b.LastCheckError)
	}
	if a := st.Backends[0]; a.State != "up" || a.LastCheckError != "" {
		t.Errorf("other backend: %q, last check error %q; want up, no error", a.State, a.LastCheckError)
	}
	if st.Totals.Serving != 1 {
		t.Errorf("serving %d; want 1", st.Totals.Serving)
	}
}

var (
	statusNonceRe = regexp.MustCompile(`<script nonce="([^"]+)">`)
	statusTokenRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	statusRowRe   = regexp.MustCompile(`<tr data-backend="([^"]*)">`)
)

func TestStatusPage(t *testing.T) {
	s := startStatusSite(t, 3, nil, nil)
	resp, body := s.do(t, http.MethodGet, "/status/", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /status/: %d", resp.StatusCode)
	}
	h := resp.Header
	if ct := h.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := h.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}
	m := statusNonceRe.FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no script with a nonce in the page")
	}
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'nonce-" + m[1] + "'", "style-src 'nonce-" + m[1] + "'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") {
		t.Errorf("Content-Security-Policy %q allows unsafe-inline", csp)
	}
	rows := statusRowRe.FindAllStringSubmatch(body, -1)
	if len(rows) != 3+1 { // a row per backend, and the template row
		t.Fatalf("%d rows in the page; want 3 and the template", len(rows))
	}
	for i, u := range s.urls {
		if rows[i][1] != u {
			t.Errorf("row %d is %q; want %q", i, rows[i][1], u)
		}
	}
	if strings.Count(body, `class="state st-up">up<`) != 3+1 { // 3 rows and the legend
		t.Errorf("want 3 rows in state up")
	}
	if strings.Contains(body, "<form") || strings.Contains(body, "csrf") {
		t.Error("read-only page shows action controls")
	}
	for _, ext := range []string{"src=\"http", "href=\"http", "@import", "url("} {
		if strings.Contains(body, ext) {
			t.Errorf("page refers to an external asset: %q", ext)
		}
	}

	// A fresh nonce each time.
	_, body2 := s.do(t, http.MethodGet, "/status/", nil, nil)
	if m2 := statusNonceRe.FindStringSubmatch(body2); m2 == nil || m2[1] == m[1] {
		t.Error("nonce reused across responses")
	}

	resp, _ = s.do(t, http.MethodGet, "/status/nope", nil, nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /status/nope: %d; want 404", resp.StatusCode)
	}
	resp, _ = s.do(t, http.MethodDelete, "/status/json", nil, nil)
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("DELETE /status/json: %d; want 405", resp.StatusCode)
	}
}

func TestStatusPageEscapes(t *testing.T) {
	// A query is part of a backend's identity, so it reaches the page.
	raw := `http://127.0.0.1:1/?x="><script>alert(1)</script>`
	be, err := lb.NewBackend(raw)
	if err != nil {
		t.Skipf("NewBackend(%q): %v", raw, err)
	}
	s := serveStatusSite(t, []string{raw}, []*lb.Backend{be}, nil, lb.WithStatusTitle("<b>edge</b>"))
	_, body := s.do(t, http.MethodGet, "/status/", nil, nil)
	if strings.Contains(body, "<script>alert") || strings.Contains(body, "<b>edge") {
		t.Errorf("unescaped input in the page:\n%s", body)
	}
	if !strings.Contains(body, "&lt;b&gt;edge&lt;/b&gt;") {
		t.Error("escaped title not found")
	}
	// The row's key, which the script matches against the JSON, is the URL
	// itself, not a URL-encoded form of it.
	if rows := statusRowRe.FindAllStringSubmatch(body, -1); len(rows) == 0 || html.UnescapeString(rows[0][1]) != be.String() {
		t.Errorf("rows %q; want the first keyed by %q", rows, be.String())
	}
}

// statusAdmin is the header the tests' authorization check wants.
var statusAdmin = http.Header{"X-Admin": {"yes"}}

func statusIsAdmin(r *http.Request) bool { return r.Header.Get("X-Admin") == "yes" }

// statusToken loads the page as an admin and returns the form's token.
func (s *statusSite) token(t *testing.T) string {
	t.Helper()
	_, body := s.do(t, http.MethodGet, "/status/", nil, statusAdmin)
	m := statusTokenRe.FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no csrf token in the admin's page")
	}
	return m[1]
}

func TestStatusActionsOffByDefault(t *testing.T) {
	s := startStatusSite(t, 1, nil, nil)
	for _, path := range []string{"/status/", "/status/json"} {
		resp, _ := s.do(t, http.MethodPost, path, url.Values{"action": {"drain"}, "backend": {s.urls[0]}}, statusAdmin)
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST %s without WithStatusActions: %d; want 405", path, resp.StatusCode)
		}
		if allow := resp.Header.Get("Allow"); allow != "GET, HEAD" {
			t.Errorf("POST %s: Allow %q", path, allow)
		}
	}
	if st := statusStateOf(t, s.status(t, "/status/json"), s.urls[0]); st != "up" {
		t.Errorf("state %q after refused POSTs; want up", st)
	}
}

func TestStatusActionsUnauthorized(t *testing.T) {
	s := startStatusSite(t, 1, nil, nil, lb.WithStatusActions(func(*http.Request) bool { return false }))
	_, body := s.do(t, http.MethodGet, "/status/", nil, statusAdmin)
	if strings.Contains(body, "<form") {
		t.Error("page shows action controls to a viewer authorize refuses")
	}
	resp, body := s.do(t, http.MethodPost, "/status/", url.Values{"action": {"drain"}, "backend": {s.urls[0]}, "csrf": {"x"}}, statusAdmin)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST refused by authorize: %d %q; want 403", resp.StatusCode, body)
	}
	if st := statusStateOf(t, s.status(t, "/status/json"), s.urls[0]); st != "up" {
		t.Errorf("state %q after a refused POST; want up", st)
	}
}

func TestStatusActions(t *testing.T) {
	var calls int
	var mu sync.Mutex
	s := startStatusSite(t, 2, nil, nil, lb.WithStatusActions(func(r *http.Request) bool {
		mu.Lock()
		calls++
		mu.Unlock()
		return statusIsAdmin(r)
	}))
	_, body := s.do(t, http.MethodGet, "/status/", nil, nil)
	if strings.Contains(body, "<form") {
		t.Error("page shows action controls to a viewer authorize refuses")
	}
	token := s.token(t)
	u := s.urls[0]
	jsonHdr := http.Header{"X-Admin": {"yes"}, "Accept": {"application/json"}}

	post := func(form url.Values, hdr http.Header) (*http.Response, string) {
		t.Helper()
		return s.do(t, http.MethodPost, "/status/", form, hdr)
	}
	state := func() string {
		t.Helper()
		return statusStateOf(t, s.status(t, "/status/json"), u)
	}

	// A form post without the script: redirected back to the page.
	resp, body := post(url.Values{"action": {"drain"}, "backend": {u}, "csrf": {token}}, statusAdmin)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/status/" {
		t.Fatalf("drain: %d, Location %q, %q; want 303 to /status/", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	if st := state(); st != "draining" {
		t.Errorf("after drain: %q; want draining", st)
	}

	resp, body = post(url.Values{"action": {"maintenance-on"}, "backend": {u}, "csrf": {token}}, jsonHdr)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"ok":true`) {
		t.Fatalf("maintenance-on: %d %q", resp.StatusCode, body)
	}
	if st := state(); st != "maintenance" {
		t.Errorf("after maintenance-on: %q; want maintenance", st)
	}
	resp, body = post(url.Values{"action": {"maintenance-off"}, "backend": {u}, "csrf": {token}}, jsonHdr)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("maintenance-off: %d %q", resp.StatusCode, body)
	}
	if st := state(); st != "up" {
		t.Errorf("after maintenance-off: %q; want up", st)
	}

	resp, body = post(url.Values{"action": {"weight"}, "backend": {u}, "weight": {"7"}, "csrf": {token}}, jsonHdr)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("weight: %d %q", resp.StatusCode, body)
	}
	if w := s.status(t, "/status/json").Backends[0].Weight; w != 7 {
		t.Errorf("weight %d after the weight action; want 7", w)
	}

	for _, c := range []struct {
		name string
		form url.Values
		hdr  http.Header
		code int
	}{
		{"no token", url.Values{"action": {"drain"}, "backend": {u}}, jsonHdr, http.StatusForbidden},
		{"wrong token", url.Values{"action": {"drain"}, "backend": {u}, "csrf": {token + "x"}}, jsonHdr, http.StatusForbidden},
		{"not authorized", url.Values{"action": {"drain"}, "backend": {u}, "csrf": {token}}, http.Header{"Accept": {"application/json"}}, http.StatusForbidden},
		{"unknown backend", url.Values{"action": {"drain"}, "backend": {"http://127.0.0.1:1"}, "csrf": {token}}, jsonHdr, http.StatusNotFound},
		{"unknown action", url.Values{"action": {"explode"}, "backend": {u}, "csrf": {token}}, jsonHdr, http.StatusBadRequest},
		{"bad weight", url.Values{"action": {"weight"}, "backend": {u}, "weight": {"0"}, "csrf": {token}}, jsonHdr, http.StatusBadRequest},
		{"weight not a number", url.Values{"action": {"weight"}, "backend": {u}, "weight": {"lots"}, "csrf": {token}}, jsonHdr, http.StatusBadRequest},
		{"no backend", url.Values{"action": {"drain"}, "csrf": {token}}, jsonHdr, http.StatusBadRequest},
	} {
		resp, body := post(c.form, c.hdr)
		if resp.StatusCode != c.code {
			t.Errorf("%s: %d %q; want %d", c.name, resp.StatusCode, body, c.code)
		}
	}
	if st := state(); st != "up" {
		t.Errorf("after refused actions: %q; want up", st)
	}
	if w := s.status(t, "/status/json").Backends[0].Weight; w != 7 {
		t.Errorf("weight %d after refused actions; want 7", w)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls == 0 {
		t.Error("authorize never called")
	}
}

func TestStatusGETNeverActs(t *testing.T) {
	s := startStatusSite(t, 1, nil, nil, lb.WithStatusActions(statusIsAdmin))
	token := s.token(t)
	q := url.Values{"action": {"maintenance-on"}, "backend": {s.urls[0]}, "csrf": {token}}.Encode()
	for _, path := range []string{"/status/?" + q, "/status/json?" + q, "/status/?format=json&" + q} {
		if resp, _ := s.do(t, http.MethodGet, path, nil, statusAdmin); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", path, resp.StatusCode)
		}
	}
	// Nor does a POST whose action is in the query rather than the form.
	resp, _ := s.do(t, http.MethodPost, "/status/?"+q, url.Values{"csrf": {token}}, statusAdmin)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("POST with the action in the query: %d; want 400", resp.StatusCode)
	}
	if st := statusStateOf(t, s.status(t, "/status/json"), s.urls[0]); st != "up" {
		t.Errorf("state %q after GETs carrying an action; want up", st)
	}
}

func TestStatusCrossOriginRefused(t *testing.T) {
	s := startStatusSite(t, 1, nil, nil, lb.WithStatusActions(statusIsAdmin))
	token := s.token(t)
	form := url.Values{"action": {"maintenance-on"}, "backend": {s.urls[0]}, "csrf": {token}}
	for _, c := range []struct {
		name string
		hdr  http.Header
	}{
		{"Origin", http.Header{"Origin": {"http://evil.example"}}},
		{"Sec-Fetch-Site cross-site", http.Header{"Sec-Fetch-Site": {"cross-site"}}},
		{"Sec-Fetch-Site same-site", http.Header{"Sec-Fetch-Site": {"same-site"}, "Origin": {"http://sub.127.0.0.1"}}},
		{"Referer", http.Header{"Referer": {"http://evil.example/page"}}},
	} {
		hdr := c.hdr.Clone()
		hdr.Set("X-Admin", "yes")
		resp, body := s.do(t, http.MethodPost, "/status/", form, hdr)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("cross-origin POST (%s): %d %q; want 403", c.name, resp.StatusCode, body)
		}
	}
	if st := statusStateOf(t, s.status(t, "/status/json"), s.urls[0]); st != "up" {
		t.Fatalf("state %q after cross-origin POSTs; want up", st)
	}
	// The same request from the page's own origin goes through.
	resp, body := s.do(t, http.MethodPost, "/status/", form, http.Header{
		"X-Admin": {"yes"}, "Origin": {s.srv.URL}, "Sec-Fetch-Site": {"same-origin"}, "Referer": {s.srv.URL + "/status/"},
	})
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("same-origin POST: %d %q; want 303", resp.StatusCode, body)
	}
	if st := statusStateOf(t, s.status(t, "/status/json"), s.urls[0]); st != "maintenance" {
		t.Errorf("state %q after a same-origin POST; want maintenance", st)
	}
}

func TestStatusOptionsPanic(t *testing.T) {
	for name, f := range map[string]func(){
		"nil authorize":    func() { lb.WithStatusActions(nil) },
		"negative refresh": func() { lb.WithStatusRefresh(-time.Second) },
		"nil balancer":     func() { lb.StatusHandler(nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}
