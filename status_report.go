package lb

import "time"

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
	Sticky           bool            `json:"sticky"` // WithStickyCookie is on
	EventsDropped    int64           `json:"events_dropped"`
	LatencyBucketsMS []float64       `json:"latency_buckets_ms"`
	Totals           statusTotals    `json:"totals"`
	Backends         []statusBackend `json:"backends"`
	LoadReports      bool            `json:"load_reports"` // WithLoadReports is on: backends have a load
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
	StickyHits        int64    `json:"sticky_hits"`
	StickyMisses      int64    `json:"sticky_misses"`
	StickyRewrites    int64    `json:"sticky_rewrites"`
	RequestsPerSecond *float64 `json:"requests_per_second"`
	ErrorRate         *float64 `json:"error_rate"`
}

type statusBackend struct {
	URL               string      `json:"url"`
	Weight            int         `json:"weight"`
	EffectiveWeight   float64     `json:"effective_weight"`
	Backup            bool        `json:"backup"`
	State             State       `json:"state"`
	Reason            string      `json:"reason"`
	Active            int64       `json:"active"`
	Requests          int64       `json:"requests"`
	Failures          int64       `json:"failures"`
	Retries           int64       `json:"retries"`
	StickyHits        int64       `json:"sticky_hits"`
	RequestsPerSecond *float64    `json:"requests_per_second"` // null until two samples
	ErrorRate         *float64    `json:"error_rate"`          // failures/requests over the last step
	LatencyEWMAMS     float64     `json:"latency_ewma_ms"`
	LatencyHistoryMS  []float64   `json:"latency_history_ms"` // EWMA at each refresh, oldest first
	LatencyHistogram  []int64     `json:"latency_histogram"`  // counts per latency_buckets_ms, then the rest
	LastCheck         *time.Time  `json:"last_check"`         // null without active checks
	LastCheckError    string      `json:"last_check_error"`
	Load              *statusLoad `json:"load"` // null without WithLoadReports
}

// statusLoad is a backend's dynamic weight (WithLoadReports).
type statusLoad struct {
	Factor        float64    `json:"factor"`
	DynamicWeight float64    `json:"dynamic_weight"` // 0: none counts now
	Utilization   float64    `json:"utilization"`
	QPS           float64    `json:"qps"`
	EPS           float64    `json:"eps"`
	ReportTime    *time.Time `json:"report_time"` // null before the first report
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
		Sticky:         h.b.o.sticky != nil,
		EventsDropped:  st.EventsDropped,
		Totals: statusTotals{
			Backends:       len(st.Backends),
			Active:         st.Active,
			Requests:       st.Requests,
			Failures:       st.Failures,
			Retries:        st.Retries,
			Unavailable:    st.Unavailable,
			Failed:         st.Failed,
			StickyHits:     st.StickyHits,
			StickyMisses:   st.StickyMisses,
			StickyRewrites: st.StickyRewrites,
		},
		Backends:    make([]statusBackend, len(st.Backends)),
		LoadReports: h.b.load != nil,
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
			StickyHits:        bs.StickyHits,
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
		if rep.LoadReports && bs.LoadFactor > 0 {
			out.Load = &statusLoad{Factor: bs.LoadFactor, DynamicWeight: bs.DynamicWeight,
				Utilization: bs.LoadUtilization, QPS: bs.LoadQPS, EPS: bs.LoadEPS}
			if !bs.LoadReportTime.IsZero() {
				t := bs.LoadReportTime
				out.Load.ReportTime = &t
			}
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
