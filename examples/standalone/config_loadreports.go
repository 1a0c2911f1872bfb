package main

import (
	"math"
	"strconv"

	"github.com/tinylb/lb"
)

// loadReportsConfig is lb.LoadReports: dynamic weights from the backends'
// load reports (ORCA endpoint-load-metrics headers, or polls), or from
// the latencies and failures the balancer measures. Zero values are the
// library's defaults (gRFC A58's).
type loadReportsConfig struct {
	Header        string   `json:"header"`         // default "endpoint-load-metrics"
	StripHeader   bool     `json:"strip_header"`   // remove header from the responses
	PollPath      string   `json:"poll_path"`      // "": no polls
	PollInterval  duration `json:"poll_interval"`  // default 10s
	Blackout      duration `json:"blackout"`       // default 10s
	Expiration    duration `json:"expiration"`     // default 3m
	UpdatePeriod  duration `json:"update_period"`  // default 1s
	Penalty       float64  `json:"penalty"`        // error_utilization_penalty; default 1
	MaxFactor     float64  `json:"max_factor"`     // default 10
	Measured      bool     `json:"measured"`       // measure instead of reading reports
	MeasureWindow duration `json:"measure_window"` // default 10s
}

// validateLoadReports checks load_reports.
func (c *config) validateLoadReports() error {
	if c.LoadReports == nil {
		return nil
	}
	return c.LoadReports.validate("load_reports")
}

// validate checks r, whose path is p, field by field, then with the
// library's LoadReports.Validate, which has the last word.
func (r *loadReportsConfig) validate(p string) error {
	for _, d := range []struct {
		name string
		v    duration
	}{
		{"poll_interval", r.PollInterval}, {"blackout", r.Blackout}, {"expiration", r.Expiration},
		{"update_period", r.UpdatePeriod}, {"measure_window", r.MeasureWindow},
	} {
		if d.v < 0 {
			return badf(p+"."+d.name, quoteD(d.v), "must not be negative (0 is the default)")
		}
	}
	if r.Penalty < 0 {
		return badf(p+".penalty", strconv.FormatFloat(r.Penalty, 'g', -1, 64), "must not be negative (0 is the default, 1)")
	}
	if r.MaxFactor != 0 && (r.MaxFactor < 1 || math.IsInf(r.MaxFactor, 0)) {
		return badf(p+".max_factor", strconv.FormatFloat(r.MaxFactor, 'g', -1, 64), "must be a finite number of at least 1 (0 is the default, 10)")
	}
	if err := r.reports().Validate(); err != nil {
		return &fieldError{path: p, msg: err.Error(), err: err}
	}
	return nil
}

// reports returns the lb.LoadReports of r.
func (r *loadReportsConfig) reports() lb.LoadReports {
	return lb.LoadReports{
		Header:        r.Header,
		StripHeader:   r.StripHeader,
		PollPath:      r.PollPath,
		PollInterval:  r.PollInterval.D(),
		Blackout:      r.Blackout.D(),
		Expiration:    r.Expiration.D(),
		UpdatePeriod:  r.UpdatePeriod.D(),
		Penalty:       r.Penalty,
		MaxFactor:     r.MaxFactor,
		Measured:      r.Measured,
		MeasureWindow: r.MeasureWindow.D(),
	}
}

// loadReportsOptions returns lb.WithLoadReports if load_reports is set.
// c must have passed validate.
func (c *config) loadReportsOptions() []lb.Option {
	if c.LoadReports == nil {
		return nil
	}
	return []lb.Option{lb.WithLoadReports(c.LoadReports.reports())}
}
