package lb

import (
	"bytes"
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// StatusOption configures a [StatusHandler].
type StatusOption interface {
	applyStatus(*statusConfig)
}

type statusOptionFunc func(*statusConfig)

func (f statusOptionFunc) applyStatus(c *statusConfig) { f(c) }

type statusConfig struct {
	authorize func(*http.Request) bool
	title     string
	refresh   time.Duration
}

// WithStatusActions turns on the status page's actions: a form on each
// backend's row to drain it, take it down for maintenance, put it back in
// service, or change its weight. Every action request must pass authorize,
// or it is answered 403 Forbidden; the page shows the controls only to GET
// requests that authorize accepts too. Actions are POST requests carrying a
// token embedded in the page, and cross-origin browser requests are refused
// (see [http.CrossOriginProtection]), so another site cannot make a
// viewer's browser act. A nil authorize makes WithStatusActions panic:
// actions are never open to everyone by default.
//
// A request with an "Authorization: Bearer ..." header that authorize
// accepts needs no page token, so that scripts can act with one request;
// a browser never sends such a header on its own, as it does cookies and
// basic credentials, which keep needing the page token.
func WithStatusActions(authorize func(*http.Request) bool) StatusOption {
	if authorize == nil {
		panic("lb: WithStatusActions(nil): an authorization check is required")
	}
	return statusOptionFunc(func(c *statusConfig) { c.authorize = authorize })
}

// WithStatusTitle sets the title of the status page. The default is
// "tinylb status".
func WithStatusTitle(title string) StatusOption {
	return statusOptionFunc(func(c *statusConfig) { c.title = title })
}

// WithStatusRefresh sets how often the page refreshes itself from the JSON
// endpoint, and so the step of the requests/s and error rates and of the
// latency sparkline. The default is one second. A negative d makes
// WithStatusRefresh panic; zero means the default.
func WithStatusRefresh(d time.Duration) StatusOption {
	if d < 0 {
		panic(fmt.Sprintf("lb: WithStatusRefresh(%v): must not be negative", d))
	}
	return statusOptionFunc(func(c *statusConfig) { c.refresh = d })
}

// statusHistoryLen is the number of latency samples kept per backend for
// the sparkline: a minute at the default refresh.
const statusHistoryLen = 60

// statusMaxForm bounds the body of an action request.
const statusMaxForm = 16 << 10

//go:embed status.html
var statusPageSource string

var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"rate":   fmtStatusRate,
	"pct":    fmtStatusPct,
	"ms":     fmtStatusMS,
	"weight": fmtStatusWeight,
	"ago":    fmtStatusAgo,
	"load":   fmtStatusLoad,
}).Parse(statusPageSource))

// StatusHandler returns an [http.Handler] serving a live status page of b:
// a self-contained HTML page (no external assets) with a row per backend
// showing its state, weight and effective weight, requests in flight,
// requests per second, error rate, a latency sparkline and its last health
// check, refreshed every second from a JSON form of the same data.
//
// Paths are relative to where the handler is mounted, so it works under
// [http.StripPrefix]:
//
//	mux.Handle("/status/", http.StripPrefix("/status", lb.StatusHandler(bal)))
//
// GET "" or "/" serves the page; GET "/json" (or "?format=json") serves
// the JSON: per backend its url, weight, effective_weight, backup, state,
// reason, active, requests, failures, retries, requests_per_second,
// error_rate (failures per attempt), latency_ewma_ms, latency_history_ms
// (the EWMA at each of the last 60 refreshes), latency_histogram (counts
// per latency_buckets_ms, then the rest), last_check, last_check_error and
// load (with [WithLoadReports]: factor, dynamic_weight, utilization, qps,
// eps, report_time; else null, and load_reports is false); and the totals.
// With WithLoadReports the page has a Load column too. Rates are computed from the counters' change between
// successive refreshes, which the handler remembers (they are null until
// it has two samples); one handler may serve many viewers.
//
// The page is read-only unless [WithStatusActions] is given: then a POST to
// the page's own path with a form (action=drain, maintenance-on,
// maintenance-off or weight; backend=URL; weight=N; csrf=the token in the
// page, unless the request carries a bearer token) acts on the backend,
// answering JSON ({"ok":true,...}) to a request that accepts
// application/json and a redirect to the page otherwise. Without it, POST
// is answered 405 Method Not Allowed. Programs in the same process should
// act through [Pool]'s methods instead.
//
// Every answer carries Cache-Control: no-store; the page has a strict
// Content-Security-Policy whose only script and stylesheet are its own,
// allowed by a nonce drawn for each response.
func StatusHandler(b *Balancer, opts ...StatusOption) http.Handler {
	if b == nil {
		panic("lb: StatusHandler with a nil *Balancer")
	}
	h := &statusHandler{
		b:    b,
		cfg:  statusConfig{title: "tinylb status", refresh: time.Second},
		cop:  http.NewCrossOriginProtection(),
		hist: make(map[string]*statusSeries),
	}
	for _, o := range opts {
		if o != nil {
			o.applyStatus(&h.cfg)
		}
	}
	if h.cfg.refresh == 0 {
		h.cfg.refresh = time.Second
	}
	if h.cfg.authorize != nil {
		var key [32]byte
		rand.Read(key[:])
		h.token = base64.RawURLEncoding.EncodeToString(key[:])
	}
	return h
}

type statusHandler struct {
	b     *Balancer
	cfg   statusConfig
	cop   *http.CrossOriginProtection
	token string // CSRF token of the action forms; "" without actions

	mu         sync.Mutex
	lastSample time.Time                // when the rates were last computed
	hist       map[string]*statusSeries // by backend URL
	totals     statusSeries
}

func (h *statusHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "", "/":
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			if r.URL.Query().Get("format") == "json" {
				h.serveJSON(w, r)
			} else {
				h.servePage(w, r)
			}
		case http.MethodPost:
			if h.cfg.authorize == nil {
				h.methodNotAllowed(w, "GET, HEAD")
				return
			}
			h.serveAction(w, r)
		default:
			if h.cfg.authorize == nil {
				h.methodNotAllowed(w, "GET, HEAD")
			} else {
				h.methodNotAllowed(w, "GET, HEAD, POST")
			}
		}
	case "/json":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.methodNotAllowed(w, "GET, HEAD")
			return
		}
		h.serveJSON(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (h *statusHandler) methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
}

// commonHeaders are set on every answer of the handler.
func commonHeaders(w http.ResponseWriter) {
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "same-origin")
}

func (h *statusHandler) serveJSON(w http.ResponseWriter, r *http.Request) {
	body, err := json.Marshal(h.report())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	commonHeaders(w)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.Write(append(body, '\n'))
}

// statusPageData is what the page template renders.
type statusPageData struct {
	Title     string
	Nonce     string
	RefreshMS int64
	Actions   bool   // show the action controls
	Token     string // CSRF token, when Actions
	Report    statusReport
	Rows      []statusRow
	Blank     statusRow // the row template the script clones for new backends
	States    []string  // for the legend
}

type statusRow struct {
	B         statusBackend
	StateName string
	Load      bool // show the load column
	Actions   bool
	Sticky    bool // show the sticky hits column
	Token     string
	Now       time.Time
}

func (h *statusHandler) servePage(w http.ResponseWriter, r *http.Request) {
	var nonceBytes [16]byte
	rand.Read(nonceBytes[:])
	nonce := hex.EncodeToString(nonceBytes[:])
	actions := h.cfg.authorize != nil && h.cfg.authorize(r)
	d := statusPageData{
		Title:     h.cfg.title,
		Nonce:     nonce,
		RefreshMS: h.cfg.refresh.Milliseconds(),
		Actions:   actions,
		Report:    h.report(),
		States:    stateNames[:],
	}
	if actions {
		d.Token = h.token
	}
	for _, b := range d.Report.Backends {
		d.Rows = append(d.Rows, statusRow{B: b, StateName: b.State.String(), Load: d.Report.LoadReports,
			Actions: actions, Sticky: d.Report.Sticky, Token: d.Token, Now: d.Report.Time})
	}
	d.Blank = statusRow{Load: d.Report.LoadReports, Actions: actions, Sticky: d.Report.Sticky, Token: d.Token}
	var buf bytes.Buffer
	if err := statusPage.Execute(&buf, d); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	commonHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", fmt.Sprintf("default-src 'none'; script-src 'nonce-%[1]s'; style-src 'nonce-%[1]s'; "+
		"connect-src 'self'; img-src data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'", nonce))
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.Write(buf.Bytes())
}

// Formatting for the page's first rendering; the script formats the same
// way on every refresh.

func fmtStatusRate(v *float64) string {
	if v == nil {
		return "—"
	}
	return strconv.FormatFloat(*v, 'f', 1, 64)
}

func fmtStatusPct(v *float64) string {
	if v == nil {
		return "—"
	}
	return strconv.FormatFloat(*v*100, 'f', 1, 64) + "%"
}

func fmtStatusMS(v float64, requests int64) string {
	switch {
	case requests == 0:
		return "—"
	case v < 10:
		return strconv.FormatFloat(v, 'f', 2, 64) + " ms"
	case v < 100:
		return strconv.FormatFloat(v, 'f', 1, 64) + " ms"
	}
	return strconv.FormatFloat(v, 'f', 0, 64) + " ms"
}

func fmtStatusWeight(v float64) string {
	if v == float64(int64(v)) {
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// fmtStatusLoad shows a backend's load factor and last report:
// "×1.82 · util 0.20 · 100.0 rps · 0.0 eps", or "×1.00 · no report".
func fmtStatusLoad(l *statusLoad) string {
	if l == nil {
		return "—"
	}
	s := "×" + strconv.FormatFloat(l.Factor, 'f', 2, 64)
	if l.ReportTime == nil {
		return s + " · no report"
	}
	return s + " · util " + strconv.FormatFloat(l.Utilization, 'f', 2, 64) +
		" · " + strconv.FormatFloat(l.QPS, 'f', 1, 64) + " rps · " + strconv.FormatFloat(l.EPS, 'f', 1, 64) + " eps"
}

func fmtStatusAgo(now time.Time, t *time.Time) string {
	if t == nil {
		return "—"
	}
	d := max(now.Sub(*t), 0)
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s ago"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m ago"
	}
	return strconv.Itoa(int(d/time.Hour)) + "h ago"
}
