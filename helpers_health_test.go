package lb_test

// Helpers of the end-to-end tests of health checking (health_*_test.go,
// and alldown_test.go and slowstart_test.go): the front end and its client,
// observation, a manual clock, the log of checks, a custom checker and a
// log handler. The test backend, hcServer, is in
// helpers_health_backend_test.go.
//
// Real HTTP over 127.0.0.1 throughout. Active checks run on real timers, so
// their tests poll with a bounded deadline; passive windows, ejections and
// slow-start ramps are driven by a manual clock given with lb.WithClock,
// which the balancer reads lazily on requests.
//
// Helpers here are prefixed hc so that they never clash with the helpers of
// the core test files of the same package.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
)

// ---------------------------------------------------------------------------
// Front end and client

// hcGW serves a balancer on 127.0.0.1 with a client of its own.
type hcGW struct {
	bal *lb.Balancer
	url string
	c   *http.Client
}

type hcResp struct {
	status int
	header http.Header
	body   string
}

// hcServe serves bal. Cleanups run in this order: the servers are
// unblocked, the front server closes (waiting for its requests), the
// balancer closes, the client's idle connections close; the backends close
// after that, in their own cleanups.
func hcServe(t testing.TB, bal *lb.Balancer, servers ...*hcServer) *hcGW {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: 64, Proxy: nil}
	t.Cleanup(tr.CloseIdleConnections)
	t.Cleanup(func() { _ = bal.Close() })
	front := httptest.NewServer(bal)
	t.Cleanup(front.Close)
	t.Cleanup(func() {
		for _, s := range servers {
			s.unblock()
		}
	})
	return &hcGW{bal: bal, url: front.URL, c: &http.Client{Transport: tr, Timeout: 20 * time.Second}}
}

func (g *hcGW) get(ctx context.Context, path string, hdr http.Header) (hcResp, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.url+path, nil)
	if err != nil {
		return hcResp{}, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := g.c.Do(req)
	if err != nil {
		return hcResp{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return hcResp{}, err
	}
	return hcResp{status: resp.StatusCode, header: resp.Header, body: string(b)}, nil
}

// mustGet sends GET path, failing the test on a transport error.
func (g *hcGW) mustGet(t testing.TB, path string) hcResp {
	t.Helper()
	r, err := g.get(context.Background(), path, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return r
}

// spread sends n sequential GETs, each of which must get a 200, and counts
// the backends (by name) that answered.
func (g *hcGW) spread(t testing.TB, n int) map[string]int {
	t.Helper()
	got := make(map[string]int)
	for i := 0; i < n; i++ {
		r := g.mustGet(t, "/")
		if r.status != http.StatusOK {
			t.Fatalf("GET #%d: status %d (%q); want 200", i, r.status, r.body)
		}
		got[r.body]++
	}
	return got
}

// hitBackend sends sequential GETs until one is attempted on the backend
// with the given URL (per Stats), and returns that request's answer. The
// strategy must reach it within 20 requests.
func (g *hcGW) hitBackend(t testing.TB, url string) hcResp {
	t.Helper()
	for i := 0; i < 20; i++ {
		before, _ := hcStat(g.bal, url)
		r := g.mustGet(t, "/")
		after, _ := hcStat(g.bal, url)
		if after.Requests > before.Requests {
			return r
		}
	}
	t.Fatalf("20 requests and none reached %s", url)
	return hcResp{}
}

// burst starts n concurrent GETs of path; wait returns their statuses (0
// for a transport error) once all are done.
func (g *hcGW) burst(n int, path string) (wait func() []int, done *atomic.Int64) {
	statuses := make([]int, n)
	done = new(atomic.Int64)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer done.Add(1)
			r, err := g.get(context.Background(), path, nil)
			if err == nil {
				statuses[i] = r.status
			}
		}()
	}
	return func() []int { wg.Wait(); return statuses }, done
}

// ---------------------------------------------------------------------------
// Observation

// hcStat returns the stats of the backend with the given URL.
func hcStat(bal *lb.Balancer, url string) (lb.BackendStats, bool) {
	for _, b := range bal.Stats().Backends {
		if b.URL == url {
			return b, true
		}
	}
	return lb.BackendStats{}, false
}

func hcState(bal *lb.Balancer, url string) lb.State {
	bs, ok := hcStat(bal, url)
	if !ok {
		return lb.State(255)
	}
	return bs.State
}

// hcWait polls cond until it holds, failing the test after 10 s.
func hcWait(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 10s waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// hcWaitState waits until the backend at url is in state want (per Stats,
// which shows the last published snapshot).
func hcWaitState(t testing.TB, bal *lb.Balancer, url string, want lb.State) {
	t.Helper()
	hcWait(t, fmt.Sprintf("%s to be %v", url, want), func() bool { return hcState(bal, url) == want })
}

// hcWaitChecked waits until every server has been checked at least once,
// as the balancer sees it.
func hcWaitChecked(t testing.TB, bal *lb.Balancer, servers ...*hcServer) {
	t.Helper()
	for _, s := range servers {
		hcWait(t, "first check of "+s.name, func() bool {
			bs, ok := hcStat(bal, s.url)
			return ok && !bs.LastCheck.IsZero()
		})
	}
}

// hcEvents records a balancer's events.
type hcEvents struct {
	mu  sync.Mutex
	evs []lb.Event
}

func (r *hcEvents) add(ev lb.Event) {
	r.mu.Lock()
	r.evs = append(r.evs, ev)
	r.mu.Unlock()
}

// changes returns the state changes of the backend with the given URL.
func (r *hcEvents) changes(url string) []lb.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []lb.Event
	for _, ev := range r.evs {
		if ev.Kind == lb.EventStateChanged && ev.Backend != nil && ev.Backend.String() == url {
			out = append(out, ev)
		}
	}
	return out
}

func hcDescribe(evs []lb.Event) string {
	var sb strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&sb, "[%v→%v: %s] ", ev.From, ev.To, ev.Reason)
	}
	return sb.String()
}

// hcClock is a manual clock for lb.WithClock.
type hcClock struct {
	mu sync.Mutex
	t  time.Time
}

func newHCClock() *hcClock {
	return &hcClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *hcClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *hcClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func (c *hcClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// hcCheckObs is what the balancer showed when check n reached a backend:
// the state and the last check result it had then, which are those after
// check n-1 (a checker reports each check before it starts the next).
type hcCheckObs struct {
	n         int64
	intended  bool // what the backend answers to check n
	known     bool // the balancer was there to ask
	state     lb.State
	lastCheck time.Time
	lastErr   string
}

type hcCheckLog struct {
	mu  sync.Mutex
	obs []hcCheckObs
}

// watchChecks records, for every check s receives, what the balancer
// (once stored in balp) showed at that moment.
func watchChecks(s *hcServer, balp *atomic.Pointer[lb.Balancer]) *hcCheckLog {
	l := &hcCheckLog{}
	hook := func(n int64, pass bool) {
		o := hcCheckObs{n: n, intended: pass}
		if bal := balp.Load(); bal != nil {
			if bs, ok := hcStat(bal, s.url); ok {
				o.known, o.state, o.lastCheck, o.lastErr = true, bs.State, bs.LastCheck, bs.LastCheckError
			}
		}
		l.mu.Lock()
		l.obs = append(l.obs, o)
		l.mu.Unlock()
	}
	s.healthHook.Store(&hook)
	return l
}

func (l *hcCheckLog) snapshot() []hcCheckObs {
	l.mu.Lock()
	defer l.mu.Unlock()
	obs := slices.Clone(l.obs)
	slices.SortFunc(obs, func(a, b hcCheckObs) int { return int(a.n - b.n) })
	return obs
}

// hcTimedOut reports whether a check error says the check ran out of
// time rather than got an answer.
func hcTimedOut(err string) bool {
	for _, s := range []string{"deadline exceeded", "timeout", "Timeout", "canceled"} {
		if strings.Contains(err, s) {
			return true
		}
	}
	return false
}

// verifyStreaks replays the results the balancer saw through the rise and
// fall thresholds (the first result deciding alone, as documented) and
// checks the state it showed after every check against the replay. It
// returns the results seen ('+' pass, '-' fail, 't' timed out) and the
// transitions the replay made.
//
// A check that timed out before its handler asked the balancer makes that
// record show the state after the check itself, so the comparison stops
// at the record before the first timed-out check (a loaded machine); the
// results are still all returned.
func (l *hcCheckLog) verifyStreaks(t testing.TB, name string, rise, fall int) (seen string, transitions int) {
	t.Helper()
	obs := l.snapshot()
	up, first := true, true
	passes, fails := 0, 0
	compare := true
	var sb strings.Builder
	for k := 1; k < len(obs); k++ {
		o := obs[k]
		if o.n != obs[k-1].n+1 {
			t.Fatalf("%s: checks %d and %d recorded in a row", name, obs[k-1].n, o.n)
		}
		if !o.known || o.lastCheck.IsZero() {
			continue // the balancer was not stored yet
		}
		pass := o.lastErr == ""
		switch {
		case pass:
			sb.WriteByte('+')
		case hcTimedOut(o.lastErr):
			sb.WriteByte('t')
		default:
			sb.WriteByte('-')
		}
		if pass {
			passes, fails = passes+1, 0
		} else {
			fails, passes = fails+1, 0
		}
		was := up
		switch {
		case first:
			up = pass
		case up && fails >= fall:
			up = false
		case !up && passes >= rise:
			up = true
		}
		first = false
		if up != was {
			transitions++
		}
		// Record k-1 may be stale when check k-1 timed out: k is then
		// the record that revealed it, and neither is compared.
		if next := k + 1; compare && next < len(obs) && hcTimedOut(obs[next].lastErr) {
			compare = false
			t.Logf("%s: check %d timed out (%s); states are compared up to check %d only",
				name, obs[next].n-1, obs[next].lastErr, o.n-2)
		}
		if gotUp := o.state != lb.StateDown; compare && gotUp != up {
			t.Errorf("%s: after results %s the balancer showed %v; rise %d / fall %d say up=%v",
				name, sb.String(), o.state, rise, fall, up)
		}
	}
	return sb.String(), transitions
}

// hcFlags is a custom health.Checker (the pluggable interface), for tests
// about what health does to traffic rather than about HTTP checks: a target
// passes unless it is flagged down. It answers from memory, so a loaded
// machine never makes one of its checks time out.
type hcFlags struct {
	interval   time.Duration
	rise, fall int

	mu   sync.Mutex
	down map[string]bool // by target host:port
}

var _ interface {
	health.Checker
	health.Scheduler
} = (*hcFlags)(nil)

func newHCFlags(interval time.Duration) *hcFlags {
	return &hcFlags{interval: interval, rise: 2, fall: 3, down: make(map[string]bool)}
}

func (f *hcFlags) Check(_ context.Context, target *url.URL) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down[target.Host] {
		return errors.New("flagged down")
	}
	return nil
}

func (f *hcFlags) Schedule() health.Schedule {
	return health.Schedule{Interval: f.interval, Rise: f.rise, Fall: f.fall}
}

// set flags the servers up or down.
func (f *hcFlags) set(up bool, servers ...*hcServer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range servers {
		f.down[s.addr] = !up
	}
}

// hcLogHandler is a slog.Handler that keeps every record.
type hcLogHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *hcLogHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *hcLogHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r.Clone())
	h.mu.Unlock()
	return nil
}

func (h *hcLogHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *hcLogHandler) WithGroup(string) slog.Handler      { return h }

// atLeast returns the records at level min or above.
func (h *hcLogHandler) atLeast(min slog.Level) []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []slog.Record
	for _, r := range h.recs {
		if r.Level >= min {
			out = append(out, r)
		}
	}
	return out
}

func hcAttrs(r slog.Record) map[string]string {
	m := make(map[string]string)
	r.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.String()
		return true
	})
	return m
}

// hcProbeRT is a health-check transport that counts the probes started
// after its balancer's Close returned.
type hcProbeRT struct {
	base   http.RoundTripper
	closed *atomic.Bool
	late   *atomic.Int64
}

func (p *hcProbeRT) RoundTrip(r *http.Request) (*http.Response, error) {
	if p.closed.Load() {
		p.late.Add(1)
	}
	return p.base.RoundTrip(r)
}
