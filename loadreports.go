package lb

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/tinylb/lb/internal/loadweight"
)

// LoadReports turns on dynamic weights: each backend's weight follows the
// load it reports, as in gRPC's weighted_round_robin (gRFC A58) and Envoy's
// client_side_weighted_round_robin. A backend's weight is
//
//	qps / (utilization + eps/qps × Penalty)
//
// from the last report it sent: its requests per second (rps_fractional),
// utilization (application_utilization if positive, else cpu_utilization)
// and errors per second (eps), in the ORCA text form of the
// endpoint-load-metrics header:
//
//	endpoint-load-metrics: TEXT cpu_utilization=0.3, rps_fractional=10.0, eps=0.1
//
// (Envoy's "name:value" pairs, no TEXT prefix, and the "JSON {...}" form
// are read too; reports with qps ≤ 0 or utilization ≤ 0 are ignored). The
// balancer reads reports from the response of every request
// (the Header field) and, if PollPath is set, from a request of its own to
// each backend every PollInterval. Or, with Measured, it needs no report:
// it weighs each backend by what it sees of its requests.
//
// A weight counts only after reports have come for Blackout without a
// break, and not once Expiration has passed since the last one; backends
// without a weight count as the mean of those with one, and with fewer
// than two weights the configured weights stand. A backend that goes down
// or is ejected starts a new blackout when it is back.
//
// Weights become factors of the configured weights: a backend's capacity per
// configured weight unit (its weight over its configured weight) over the
// mean of the backends with a weight, clamped to [0.01, MaxFactor]. With
// equal configured weights the shares go as the reported weights, as in
// gRPC; configured weights that match the reported capacities stay as they
// are. Factors are recomputed every UpdatePeriod and published only when one
// changed by at least 1%. They apply to [SmoothWeighted] and [LeastConn],
// with [WithSlowStart]'s ramp on top; [RoundRobin] and [ConsistentHash]
// ignore weights, as they ignore configured ones.
//
// The zero value reads the endpoint-load-metrics header with A58's
// defaults. Durations and numbers must not be negative or NaN; New panics
// on one that is (see [LoadReports.Validate]).
type LoadReports struct {
	// Header is the response header that carries a backend's report.
	// Default "endpoint-load-metrics", ORCA's.
	Header string
	// StripHeader removes Header from responses before they go to the
	// client. Off by default: Envoy's router and gRPC read ORCA load reports
	// and leave them in the response, where a client (or another balancer
	// in front) may use them too. Turn it on when the load of the backends
	// is nobody else's business.
	StripHeader bool
	// PollPath, if set, has the balancer send GET PollPath to every backend
	// every PollInterval and read a report from the answer's Header, or
	// else from its body (the same text, up to 4 KiB), like A58's
	// out-of-band reports and HAProxy's agent-check. A poll that fails is
	// logged at Debug level and is not a health failure: it never takes a
	// backend out of rotation. Off by default.
	PollPath string
	// PollInterval is the time between polls, and their timeout. Default
	// 10 s (A58's oob_reporting_period).
	PollInterval time.Duration
	// Blackout is how long a backend must report without a break before
	// its weight counts (A58 blackout_period). Default 10 s; there is no
	// zero, but time.Nanosecond comes close.
	Blackout time.Duration
	// Expiration is how long a weight lasts without a new report (A58
	// weight_expiration_period). Default 3 min.
	Expiration time.Duration
	// UpdatePeriod is how often weights are recomputed (A58
	// weight_update_period). Default 1 s; shorter periods are raised to
	// 100 ms, as in A58.
	UpdatePeriod time.Duration
	// Penalty is A58's error_utilization_penalty: how much utilization an
	// error rate of 1 (every request failing) adds. Default 1.0.
	Penalty float64
	// MaxFactor is the most a weight may multiply a configured weight by.
	// Default 10; at least 1.
	MaxFactor float64
	// Measured weighs backends without their cooperation: from the
	// attempts the balancer makes, averaged over MeasureWindow, it takes
	// qps (attempts per second), eps (failed attempts per second), the
	// mean latency to response headers of the successful ones, and the
	// utilization qps × latency (requests in flight, by Little's law). The
	// weight is then
	//
	//	e = eps/qps;  weight = (1−e) / (latency × (1 − e + Penalty·e))
	//
	// successful requests per second per request in flight at Penalty 1:
	// a backend twice as slow gets half the weight, one failing half its
	// requests half the weight. Failures' latencies are left out, so that
	// fast errors do not make a backend look fast. Reports in headers and
	// polls are not read in this mode.
	Measured bool
	// MeasureWindow is the time constant of Measured's moving average: an
	// attempt counts with weight exp(-age/MeasureWindow). Default 10 s.
	MeasureWindow time.Duration
}

// WithLoadReports turns on dynamic weights from backend load reports, or
// from measurements with r.Measured; see [LoadReports]. A goroutine owned
// by the balancer recomputes the weights, and with r.PollPath one per
// backend polls it; [Balancer.Close] stops them. [BackendStats] shows each
// backend's factor and last report.
func WithLoadReports(r LoadReports) Option {
	return optionFunc(func(o *options) { o.loadReports = &r })
}

// Validate reports the first impossible field of r, naming it.
func (r LoadReports) Validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"PollInterval", r.PollInterval}, {"Blackout", r.Blackout}, {"Expiration", r.Expiration},
		{"UpdatePeriod", r.UpdatePeriod}, {"MeasureWindow", r.MeasureWindow},
	} {
		if d.v < 0 {
			return fmt.Errorf("lb: LoadReports.%s %v: must not be negative", d.name, d.v)
		}
	}
	if !(r.Penalty >= 0) || math.IsInf(r.Penalty, 0) {
		return fmt.Errorf("lb: LoadReports.Penalty %v: must be a finite number, 0 or more", r.Penalty)
	}
	if r.MaxFactor != 0 && (!(r.MaxFactor >= 1) || math.IsInf(r.MaxFactor, 0)) {
		return fmt.Errorf("lb: LoadReports.MaxFactor %v: must be a finite number, 1 or more", r.MaxFactor)
	}
	if r.Header != "" && !isToken(r.Header) {
		return fmt.Errorf("lb: LoadReports.Header %q: not a header name", r.Header)
	}
	if r.PollPath != "" && (!strings.HasPrefix(r.PollPath, "/") || strings.ContainsAny(r.PollPath, " \t\r\n#")) {
		return fmt.Errorf("lb: LoadReports.PollPath %q: must be a path starting with /", r.PollPath)
	}
	return r.config().Validate()
}

// config is r's loadweight.Config.
func (r LoadReports) config() loadweight.Config {
	return loadweight.Config{
		Blackout: r.Blackout, Expiration: r.Expiration, UpdatePeriod: r.UpdatePeriod,
		Penalty: r.Penalty, Measured: r.Measured, Window: r.MeasureWindow, MaxFactor: r.MaxFactor,
	}
}

// isToken reports whether s is an HTTP token (RFC 9110 §5.6.2), as a
// header name must be.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
