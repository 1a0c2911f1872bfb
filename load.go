package lb

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/textproto"
	"strings"
	"time"

	"github.com/tinylb/lb/internal/loadweight"
)

// defaultPollInterval is A58's oob_reporting_period.
const defaultPollInterval = 10 * time.Second

// maxPollBody bounds the body of a poll answer that is read for a report.
const maxPollBody = 4 << 10

// loadState is a balancer's dynamic weights (WithLoadReports): a window of
// reports per backend, and the factors last published.
type loadState struct {
	r        LoadReports // with PollInterval defaulted
	group    *loadweight.Group
	header   string // r.Header in canonical form
	measured bool

	// Guarded by pool.mu.
	windows map[*Backend]*loadweight.Window
	units   map[*Backend]int // factor in 1/loadweight.Scale units, as last published
	pollers map[*Backend]context.CancelFunc
	factors []float64 // scratch for update
}

// newLoadState returns the state for r, which has been validated.
func newLoadState(r LoadReports) *loadState {
	g, err := loadweight.New(r.config())
	if err != nil {
		panic(err.Error()) // validate has seen r
	}
	if r.Header == "" {
		r.Header = "endpoint-load-metrics"
	}
	if r.PollInterval == 0 {
		r.PollInterval = defaultPollInterval
	}
	return &loadState{
		r: r, group: g, header: textproto.CanonicalMIMEHeaderKey(r.Header), measured: r.Measured,
		windows: make(map[*Backend]*loadweight.Window),
		units:   make(map[*Backend]int),
		pollers: make(map[*Backend]context.CancelFunc),
	}
}

// unitsOf is be's factor in 1/loadweight.Scale units. pool.mu must be held.
func (l *loadState) unitsOf(be *Backend) int {
	if u, ok := l.units[be]; ok {
		return u
	}
	return loadweight.Scale
}

// addedLocked gives a new member its window and, with polls, its poller.
// pool.mu must be held.
func (b *Balancer) loadAddedLocked(be *Backend) {
	l := b.load
	l.windows[be] = l.group.NewWindow()
	if l.r.PollPath == "" || l.measured {
		return
	}
	ctx, stop := context.WithCancel(b.ctx)
	l.pollers[be] = stop
	w := l.windows[be]
	b.wg.Go(func() { b.pollLoop(ctx, be, w) })
}

// loadRemovedLocked forgets a member. pool.mu must be held.
func (b *Balancer) loadRemovedLocked(be *Backend) {
	l := b.load
	if stop, ok := l.pollers[be]; ok {
		stop()
		delete(l.pollers, be)
	}
	delete(l.windows, be)
	delete(l.units, be)
}

// runLoadUpdates recomputes the weights every UpdatePeriod until ctx ends,
// as grpc-go's weightedroundrobin picker regenerates its scheduler on a
// ticker.
func (b *Balancer) runLoadUpdates(ctx context.Context) {
	t := time.NewTicker(b.load.group.Config().UpdatePeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			b.updateLoadWeights()
		}
	}
}

// updateLoadWeights recomputes every member's factor and publishes a new
// snapshot if one changed. It reports whether it published.
func (b *Balancer) updateLoadWeights() bool {
	l := b.load
	if l == nil {
		return false
	}
	p := b.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	if b.closed.Load() {
		return false
	}
	members := p.backends
	ws := make([]*loadweight.Window, len(members))
	configured := make([]int, len(members))
	for i, be := range members {
		ws[i], configured[i] = l.windows[be], be.Weight()
	}
	l.factors = l.group.Factors(b.now(), ws, configured, l.factors)
	changed := false
	for i, be := range members {
		u := max(int(l.factors[i]*loadweight.Scale+0.5), 1)
		if u != l.unitsOf(be) {
			l.units[be] = u
			changed = true
		}
	}
	if changed {
		b.publishLocked()
	}
	return changed
}

// readLoad takes a report from the response headers of an attempt on
// backend i, and strips it if so configured.
func (b *Balancer) readLoad(s *snapshot, i int, h http.Header) {
	l := b.load
	vv, ok := h[l.header]
	if !ok {
		return
	}
	if rep, ok := loadweight.ParseHeader(vv); ok {
		s.windows[i].Report(rep, b.now())
	}
	if l.r.StripHeader {
		delete(h, l.header)
	}
}

// pollLoop polls be for reports every PollInterval until ctx ends. A poll
// that fails is no health failure (HAProxy's agent-check: "agent connection
// failures are not health failures"); it is logged at Debug level.
func (b *Balancer) pollLoop(ctx context.Context, be *Backend, w *loadweight.Window) {
	every := b.load.r.PollInterval
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := b.poll(ctx, be, w); err != nil && ctx.Err() == nil {
			b.log.LogAttrs(ctx, slog.LevelDebug, "lb: load report poll failed",
				slog.String("backend", be.key), slog.String("error", err.Error()))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pollError is a poll answer without a valid report.
type pollError string

func (e pollError) Error() string { return string(e) }

// poll sends one GET PollPath to be and records the report in the answer.
func (b *Balancer) poll(ctx context.Context, be *Backend, w *loadweight.Window) error {
	l := b.load
	ctx, cancel := context.WithTimeout(ctx, l.r.PollInterval)
	defer cancel()
	u := be.url
	scheme := u.Scheme
	if scheme == "" {
		scheme = "http"
	}
	target := scheme + "://" + u.Host + strings.TrimSuffix(u.EscapedPath(), "/") + l.r.PollPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "tinylb-load-poll")
	res, err := b.transport.base.RoundTrip(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return pollError("status " + res.Status)
	}
	if vv, ok := res.Header[l.header]; ok {
		if rep, ok := loadweight.ParseHeader(vv); ok && w.Report(rep, b.now()) {
			return nil
		}
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, maxPollBody))
	if err != nil {
		return err
	}
	text := strings.TrimSpace(string(body))
	if len(text) < 4 || !strings.EqualFold(text[:4], "JSON") {
		// One pair a line is the text form too.
		text = strings.NewReplacer("\r\n", ",", "\n", ",").Replace(text)
	}
	if rep, ok := loadweight.Parse(text); ok && w.Report(rep, b.now()) {
		return nil
	}
	return pollError("no valid load report in the answer")
}
