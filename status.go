package lb

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
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
// per latency_buckets_ms, then the rest), last_check and last_check_error;
// and the totals. Rates are computed from the counters' change between
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

// statusSeries is what the handler remembers of one backend (or of the
// totals) between two samples.
type statusSeries struct {
	requests, failures int64     // counters at the last sample
	seen               bool      // the counters above are set
	rate, errRate      *float64  // over the last step; nil until two samples
	latency            []float64 // EWMA in ms at each sample, oldest first
}

// sample records the counters of a new step.
func (s *statusSeries) sample(requests, failures int64, elapsed time.Duration) {
	if s.seen && elapsed > 0 {
		dr, df := requests-s.requests, failures-s.failures
		if dr < 0 || df < 0 { // counters restarted: the backend was re-added
			dr, df = requests, failures
		}
		rate := float64(dr) / elapsed.Seconds()
		errRate := 0.0
		if dr > 0 {
			errRate = min(float64(df)/float64(dr), 1)
		}
		s.rate, s.errRate = &rate, &errRate
	}
	s.requests, s.failures, s.seen = requests, failures, true
}

func (s *statusSeries) addLatency(ms float64) {
	if len(s.latency) == statusHistoryLen {
		copy(s.latency, s.latency[1:])
		s.latency = s.latency[:statusHistoryLen-1]
	}
	s.latency = append(s.latency, ms)
}

// statusReport is the JSON form of the status.
type statusReport struct {
	Title            string          `json:"title"`
	Time             time.Time       `json:"time"`
	RefreshSeconds   float64         `json:"refresh_seconds"`
	Panic            bool            `json:"panic"`
	EventsDropped    int64           `json:"events_dropped"`
	LatencyBucketsMS []float64       `json:"latency_buckets_ms"`
	Totals           statusTotals    `json:"totals"`
	Backends         []statusBackend `json:"backends"`
}

type statusTotals struct {
	Backends          int      `json:"backends"`
	Serving           int      `json:"serving"` // up, slow-starting or probing
	Active            int64    `json:"active"`
	Requests          int64    `json:"requests"`
	Failures          int64    `json:"failures"`
	Retries           int64    `json:"retries"`
	Unavailable       int64    `json:"unavailable"`
	Failed            int64    `json:"failed"`
	RequestsPerSecond *float64 `json:"requests_per_second"`
	ErrorRate         *float64 `json:"error_rate"`
}

type statusBackend struct {
	URL               string     `json:"url"`
	Weight            int        `json:"weight"`
	EffectiveWeight   float64    `json:"effective_weight"`
	Backup            bool       `json:"backup"`
	State             State      `json:"state"`
	Reason            string     `json:"reason"`
	Active            int64      `json:"active"`
	Requests          int64      `json:"requests"`
	Failures          int64      `json:"failures"`
	Retries           int64      `json:"retries"`
	RequestsPerSecond *float64   `json:"requests_per_second"` // null until two samples
	ErrorRate         *float64   `json:"error_rate"`          // failures/requests over the last step
	LatencyEWMAMS     float64    `json:"latency_ewma_ms"`
	LatencyHistoryMS  []float64  `json:"latency_history_ms"` // EWMA at each refresh, oldest first
	LatencyHistogram  []int64    `json:"latency_histogram"`  // counts per latency_buckets_ms, then the rest
	LastCheck         *time.Time `json:"last_check"`         // null without active checks
	LastCheckError    string     `json:"last_check_error"`
}

func durationMS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// report takes a Stats snapshot and, if a refresh step has passed since the
// last one, a new sample of the rates and latencies.
func (h *statusHandler) report() statusReport {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.b.Stats()
	now := time.Now()
	elapsed := now.Sub(h.lastSample)
	step := h.lastSample.IsZero() || elapsed >= h.cfg.refresh*9/10
	if step {
		h.lastSample = now
	}

	rep := statusReport{
		Title:          h.cfg.title,
		Time:           st.Time,
		RefreshSeconds: h.cfg.refresh.Seconds(),
		Panic:          st.Panic,
		EventsDropped:  st.EventsDropped,
		Totals: statusTotals{
			Backends:    len(st.Backends),
			Active:      st.Active,
			Requests:    st.Requests,
			Failures:    st.Failures,
			Retries:     st.Retries,
			Unavailable: st.Unavailable,
			Failed:      st.Failed,
		},
		Backends: make([]statusBackend, len(st.Backends)),
	}
	rep.LatencyBucketsMS = make([]float64, len(LatencyBuckets))
	for i, d := range LatencyBuckets {
		rep.LatencyBucketsMS[i] = durationMS(d)
	}
	present := make(map[string]bool, len(st.Backends))
	for i, bs := range st.Backends {
		present[bs.URL] = true
		s := h.hist[bs.URL]
		if s == nil {
			s = &statusSeries{}
			h.hist[bs.URL] = s
		}
		ewma := durationMS(bs.LatencyEWMA)
		if step || !s.seen {
			s.sample(bs.Requests, bs.Failures, elapsed)
			s.addLatency(ewma)
		}
		out := statusBackend{
			URL:               bs.URL,
			Weight:            bs.Weight,
			EffectiveWeight:   bs.EffectiveWeight,
			Backup:            bs.Backup,
			State:             bs.State,
			Reason:            bs.Reason,
			Active:            bs.Active,
			Requests:          bs.Requests,
			Failures:          bs.Failures,
			Retries:           bs.Retries,
			RequestsPerSecond: s.rate,
			ErrorRate:         s.errRate,
			LatencyEWMAMS:     ewma,
			LatencyHistoryMS:  append([]float64(nil), s.latency...),
			LatencyHistogram:  bs.LatencyHistogram,
			LastCheckError:    bs.LastCheckError,
		}
		if !bs.LastCheck.IsZero() {
			t := bs.LastCheck
			out.LastCheck = &t
		}
		switch bs.State {
		case StateUp, StateSlowStart, StateProbing:
			rep.Totals.Serving++
		}
		rep.Backends[i] = out
	}
	for u := range h.hist {
		if !present[u] {
			delete(h.hist, u) // removed from the pool
		}
	}
	if step || !h.totals.seen {
		h.totals.sample(st.Requests, st.Failures, elapsed)
	}
	rep.Totals.RequestsPerSecond, rep.Totals.ErrorRate = h.totals.rate, h.totals.errRate
	return rep
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
	Actions   bool
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
		d.Rows = append(d.Rows, statusRow{B: b, StateName: b.State.String(), Actions: actions, Token: d.Token, Now: d.Report.Time})
	}
	d.Blank = statusRow{Actions: actions, Token: d.Token}
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

// statusActionError is an action refused, with the status to answer.
type statusActionError struct {
	code int
	msg  string
}

func (e *statusActionError) Error() string { return e.msg }

// serveAction runs one action request. Whatever happens, a browser that
// posted the form without the page's script gets a redirect back to the
// page (or the error as text); the script asks for JSON.
func (h *statusHandler) serveAction(w http.ResponseWriter, r *http.Request) {
	wantJSON := strings.Contains(r.Header.Get("Accept"), "application/json")
	backend, action, err := h.act(w, r)
	commonHeaders(w)
	if wantJSON {
		res := struct {
			OK      bool   `json:"ok"`
			Action  string `json:"action,omitempty"`
			Backend string `json:"backend,omitempty"`
			Error   string `json:"error,omitempty"`
		}{OK: err == nil, Action: action, Backend: backend}
		code := http.StatusOK
		if err != nil {
			res.Error = err.Error()
			code = err.code
		}
		body, _ := json.Marshal(res)
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(code)
		w.Write(append(body, '\n'))
		return
	}
	if err != nil {
		http.Error(w, err.msg, err.code)
		return
	}
	http.Redirect(w, r, pageLocation(r), http.StatusSeeOther)
}

// pageLocation is where to send a browser back after an action: the path
// it posted to, as the client wrote it (before any StripPrefix).
func pageLocation(r *http.Request) string {
	u, err := url.ParseRequestURI(r.RequestURI)
	if err != nil || !strings.HasPrefix(u.Path, "/") || strings.HasPrefix(u.Path, "//") || strings.Contains(u.Path, "\\") {
		return "."
	}
	return u.EscapedPath()
}

// act checks and carries out an action request.
func (h *statusHandler) act(w http.ResponseWriter, r *http.Request) (backend, action string, _ *statusActionError) {
	refuse := func(code int, format string, a ...any) (string, string, *statusActionError) {
		return backend, action, &statusActionError{code: code, msg: fmt.Sprintf(format, a...)}
	}
	if err := h.cop.Check(r); err != nil {
		return refuse(http.StatusForbidden, "cross-origin request refused")
	}
	if ref := r.Header.Get("Referer"); ref != "" && r.Header.Get("Origin") == "" && r.Header.Get("Sec-Fetch-Site") == "" {
		if u, err := url.Parse(ref); err != nil || !strings.EqualFold(u.Host, r.Host) {
			return refuse(http.StatusForbidden, "cross-origin request refused")
		}
	}
	if !h.cfg.authorize(r) {
		return refuse(http.StatusForbidden, "not authorized")
	}
	r.Body = http.MaxBytesReader(w, r.Body, statusMaxForm)
	if err := r.ParseForm(); err != nil {
		return refuse(http.StatusBadRequest, "bad form: %v", err)
	}
	if !hasBearer(r) {
		token := r.PostForm.Get("csrf")
		if token == "" || subtle.ConstantTimeCompare([]byte(token), []byte(h.token)) != 1 {
			return refuse(http.StatusForbidden, "missing or invalid csrf token: reload the page")
		}
	}
	backend, action = r.PostForm.Get("backend"), r.PostForm.Get("action")
	if backend == "" {
		return refuse(http.StatusBadRequest, "no backend given")
	}
	pool := h.b.Pool()
	var err error
	switch action {
	case "drain":
		// Start the drain and return at once: the page shows its progress.
		ctx, cancel := context.WithCancel(r.Context())
		cancel()
		if err = pool.Drain(ctx, backend); errors.Is(err, context.Canceled) {
			err = nil
		}
	case "maintenance-on":
		err = pool.SetMaintenance(backend, true)
	case "maintenance-off":
		err = pool.SetMaintenance(backend, false)
	case "weight":
		w, perr := strconv.Atoi(strings.TrimSpace(r.PostForm.Get("weight")))
		if perr != nil {
			return refuse(http.StatusBadRequest, "weight %q is not a number", r.PostForm.Get("weight"))
		}
		err = pool.SetWeight(backend, w)
	default:
		return refuse(http.StatusBadRequest, "unknown action %q", action)
	}
	switch {
	case errors.Is(err, ErrUnknownBackend):
		return refuse(http.StatusNotFound, "%v", err)
	case err != nil:
		return refuse(http.StatusBadRequest, "%v", err)
	}
	return backend, action, nil
}

// hasBearer reports whether r carries an Authorization header of the Bearer
// scheme (RFC 6750 §2.1; the scheme is case-insensitive, RFC 9110 §11.1).
//
// Such a request needs no CSRF token: a bearer token is not an ambient
// credential. A browser sends cookies, basic credentials and client
// certificates by itself, even with a form another site posts, but an
// Authorization header only when a script sets it, and a script of another
// origin cannot without a CORS preflight, which the handler never grants.
// So a request with one was made on purpose, by a program or the page's
// own origin.
func hasBearer(r *http.Request) bool {
	scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	return ok && strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(cred) != ""
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
