package loadweight

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
)

// Load is one load report of a backend: the fields of xDS's OrcaLoadReport
// (xds/data/orca/v3/orca_load_report.proto) that weighing uses.
type Load struct {
	// CPU is cpu_utilization, the fraction of the backend's CPU in use.
	CPU float64
	// Application is application_utilization, a utilization the backend
	// computes itself; when positive it is used instead of CPU, as Envoy's
	// client_side_weighted_round_robin and grpc-go's weightedroundrobin do.
	Application float64
	// Mem is mem_utilization. It is parsed and shown, not weighed.
	Mem float64
	// QPS is rps_fractional, the requests per second the backend serves.
	QPS float64
	// EPS is eps, the errors per second among them.
	EPS float64
}

// Utilization is the utilization the weight divides by: Application when it
// is positive, else CPU (Envoy's OrcaLoadReportHandler::
// getUtilizationFromOrcaReport, without named metrics).
func (l Load) Utilization() float64 {
	if l.Application > 0 {
		return l.Application
	}
	return l.CPU
}

// Weight is gRFC A58's weight for the report:
//
//	qps / (utilization + eps/qps × penalty)
//
// It is 0 for a report that says nothing: qps ≤ 0 or utilization ≤ 0 (A58
// ignores those), a negative eps, or a result that is not a positive finite
// number.
func (l Load) Weight(penalty float64) float64 {
	u := l.Utilization()
	if !(l.QPS > 0) || !(u > 0) || !(l.EPS >= 0) {
		return 0
	}
	w := l.QPS / (u + l.EPS/l.QPS*penalty)
	if !(w > 0) || math.IsInf(w, 0) {
		return 0
	}
	return w
}

// ParseHeader parses the values of an endpoint-load-metrics header, as
// [Parse] does one; several values are one report, their pairs merged (as
// Envoy's parseCommaDelimitedHeader joins them). It reports false if any
// value is malformed or a metric appears twice.
func ParseHeader(values []string) (Load, bool) {
	if len(values) == 1 {
		return Parse(values[0])
	}
	var p parser
	for _, v := range values {
		if !p.value(v) {
			return Load{}, false
		}
	}
	return p.l, p.seen != 0
}

// Parse parses one load report in the forms of the ORCA header
// endpoint-load-metrics (the "ORCA load report format" design linked from
// orca_load_report.proto, and Envoy's source/common/orca/orca_parser.cc):
//
//	TEXT cpu_utilization=0.3, mem_utilization=0.8, rps_fractional=10.0, eps=1
//	TEXT cpu_utilization:0.3,rps_fractional:10       (Envoy's separator)
//	cpu_utilization=0.3, rps_fractional=10           (no prefix)
//	JSON {"cpu_utilization": 0.3, "rps_fractional": 10.0}
//
// Names are cpu_utilization, application_utilization, mem_utilization,
// rps_fractional and eps; named_metrics.* and other names are skipped.
// It reports false, as Envoy rejects the report, for an empty report, a
// pair without a name or value, a value that is not a finite number, or a
// metric given twice. The text form allocates nothing.
func Parse(s string) (Load, bool) {
	var p parser
	if !p.value(s) {
		return Load{}, false
	}
	return p.l, p.seen != 0
}

// parser accumulates the pairs of one report.
type parser struct {
	l    Load
	seen uint8 // metrics set so far, a bit each; bit 7: a pair was read
}

const seenAny = 1 << 7

// value parses one header value into p.
func (p *parser) value(s string) bool {
	s = strings.TrimSpace(s)
	if f, rest, ok := strings.Cut(s, " "); ok || len(s) == 4 {
		switch {
		case strings.EqualFold(f, "TEXT"):
			s = rest
		case strings.EqualFold(f, "JSON"):
			return p.json(rest)
		}
	}
	if s == "" {
		return false
	}
	for s != "" {
		var pair string
		pair, s, _ = strings.Cut(s, ",")
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue // "a=1,,b=2" and a trailing comma, as Envoy's split skips them
		}
		i := strings.IndexAny(pair, "=:")
		if i <= 0 {
			return false
		}
		name, val := strings.TrimSpace(pair[:i]), strings.TrimSpace(pair[i+1:])
		if name == "" || val == "" {
			return false
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return false
		}
		if !p.set(name, v) {
			return false
		}
	}
	return true
}

// set stores metric name; false for a metric seen before.
func (p *parser) set(name string, v float64) bool {
	var bit uint8
	var dst *float64
	switch name {
	case "cpu_utilization":
		bit, dst = 1, &p.l.CPU
	case "application_utilization":
		bit, dst = 2, &p.l.Application
	case "mem_utilization":
		bit, dst = 4, &p.l.Mem
	case "rps_fractional":
		bit, dst = 8, &p.l.QPS
	case "eps":
		bit, dst = 16, &p.l.EPS
	default:
		p.seen |= seenAny
		return true // named_metrics.*, utilization.*, request_cost.*: not weighed
	}
	if p.seen&bit != 0 {
		return false
	}
	p.seen |= bit | seenAny
	*dst = v
	return true
}

// json parses the JSON form: the proto3 JSON mapping of OrcaLoadReport.
// Unknown fields are skipped.
func (p *parser) json(s string) bool {
	if p.seen != 0 {
		return false // JSON cannot be merged with other values
	}
	var r struct {
		CPU         *float64 `json:"cpu_utilization"`
		Application *float64 `json:"application_utilization"`
		Mem         *float64 `json:"mem_utilization"`
		QPS         *float64 `json:"rps_fractional"`
		EPS         *float64 `json:"eps"`
	}
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		return false
	}
	for _, f := range []struct {
		name string
		v    *float64
	}{{"cpu_utilization", r.CPU}, {"application_utilization", r.Application},
		{"mem_utilization", r.Mem}, {"rps_fractional", r.QPS}, {"eps", r.EPS}} {
		if f.v != nil && !p.set(f.name, *f.v) {
			return false
		}
	}
	p.seen |= seenAny
	return true
}
