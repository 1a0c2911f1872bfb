package loadweight

import (
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestWeightVectors is the vector table of gRFC A58's weight formula,
// qps / (utilization + eps/qps × penalty).
func TestWeightVectors(t *testing.T) {
	for _, tt := range []struct {
		qps, eps, util, penalty, want float64
	}{
		{100, 0, 0.5, 1, 200},
		{100, 10, 0.5, 1, 166.667}, // utilization' 0.6
		{100, 10, 0.5, 2, 142.857},
		{200, 0, 0.8, 1, 250},
		{50, 50, 0.25, 1, 40}, // utilization' 1.25
	} {
		l := Load{QPS: tt.qps, EPS: tt.eps, CPU: tt.util}
		assert.InDelta(t, tt.want, l.Weight(tt.penalty), 0.001, "%+v penalty %v", l, tt.penalty)
	}
}

func TestWeightIgnoresEmptyReports(t *testing.T) {
	for _, l := range []Load{
		{},
		{QPS: 100},                      // no utilization
		{CPU: 0.5},                      // no qps
		{QPS: -1, CPU: 0.5},             // qps ≤ 0
		{QPS: 100, CPU: -0.5},           // utilization ≤ 0
		{QPS: 100, CPU: 0.5, EPS: -1},   // negative eps
		{QPS: math.NaN(), CPU: 0.5},     // NaN
		{QPS: 100, CPU: math.NaN()},     // NaN
		{QPS: math.Inf(1), CPU: 0.5},    // the weight is not finite
		{QPS: 1e308, CPU: 1e-308},       // overflows
		{QPS: 100, Application: -1},     // application ≤ 0 and no cpu
		{QPS: 100, Mem: 0.5, EPS: 0.01}, // memory is not weighed
	} {
		assert.Zero(t, l.Weight(1), "%+v", l)
	}
}

// TestApplicationUtilizationPreferred: Envoy and grpc-go use
// application_utilization when it is positive, else cpu_utilization.
func TestApplicationUtilizationPreferred(t *testing.T) {
	assert.InDelta(t, 400, Load{QPS: 100, CPU: 0.9, Application: 0.25}.Weight(1), 1e-9)
	assert.InDelta(t, 400, Load{QPS: 100, CPU: 0.25}.Weight(1), 1e-9)
	assert.InDelta(t, 400, Load{QPS: 100, CPU: 0.25, Application: 0}.Weight(1), 1e-9)
}

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Load
	}{
		{"TEXT cpu_utilization=0.3, rps_fractional=10.0, eps=0.1", Load{CPU: 0.3, QPS: 10, EPS: 0.1}},
		{"TEXT cpu_utilization=0.3, mem_utilization=0.8, rps_fractional=10.0, eps=1, named_metrics.custom_metric_util=0.4",
			Load{CPU: 0.3, Mem: 0.8, QPS: 10, EPS: 1}},
		{"TEXT cpu_utilization:0.7,application_utilization:0.8,mem_utilization:0.9,rps_fractional:1000,eps:2,named_metrics.foo:123",
			Load{CPU: 0.7, Application: 0.8, Mem: 0.9, QPS: 1000, EPS: 2}},
		{"text cpu_utilization=0.5,rps_fractional=3", Load{CPU: 0.5, QPS: 3}},
		{"cpu_utilization=0.5, rps_fractional=3", Load{CPU: 0.5, QPS: 3}},
		{"  TEXT  cpu_utilization = 0.5 ,, rps_fractional= 3 , ", Load{CPU: 0.5, QPS: 3}},
		{"TEXT application_utilization=0.2,rps_fractional=1e2", Load{Application: 0.2, QPS: 100}},
		{`JSON {"cpu_utilization": 0.3, "mem_utilization": 0.8, "rps_fractional": 10.0, "eps": 1, "named_metrics": {"x": 0.4}}`,
			Load{CPU: 0.3, Mem: 0.8, QPS: 10, EPS: 1}},
		{`JSON {"application_utilization": 0.6, "rps_fractional": 5}`, Load{Application: 0.6, QPS: 5}},
		{"TEXT named_metrics.only=1", Load{}},
	} {
		got, ok := Parse(tt.in)
		require.True(t, ok, "Parse(%q) failed", tt.in)
		assert.Equal(t, tt.want, got, "Parse(%q)", tt.in)
	}
}

func TestParseRejects(t *testing.T) {
	for _, in := range []string{
		"",
		"TEXT",
		"TEXT ",
		"JSON",
		"BIN CZqZmZmZmbk/MQ==", // the binary form is not read
		"not-a-list-of-key-value-pairs",
		"cpu_utilization",
		"cpu_utilization=",
		"=0.5",
		"cpu_utilization=abc",
		`cpu_utilization="0.7"`,
		"cpu_utilization=NaN",
		"cpu_utilization=Inf",
		"cpu_utilization=-inf",
		"cpu_utilization=1e400",
		"cpu_utilization=0.7,cpu_utilization=0.8",
		"TEXT rps_fractional:1,rps_fractional=2",
		`JSON {"cpu_utilization": "0.7"}`,
		`JSON {"cpu_utilization": 0.7`,
		"JSON not json",
		"\x00\xff",
	} {
		_, ok := Parse(in)
		assert.False(t, ok, "Parse(%q) succeeded", in)
	}
}

func TestParseHeader(t *testing.T) {
	l, ok := ParseHeader([]string{"TEXT cpu_utilization=0.5", "rps_fractional=20, eps=2"})
	require.True(t, ok)
	assert.Equal(t, Load{CPU: 0.5, QPS: 20, EPS: 2}, l)
	_, ok = ParseHeader([]string{"cpu_utilization=0.5", "cpu_utilization=0.6"})
	assert.False(t, ok, "a metric in two values")
	_, ok = ParseHeader([]string{"cpu_utilization=0.5", `JSON {"eps": 1}`})
	assert.False(t, ok, "JSON after text")
	_, ok = ParseHeader(nil)
	assert.False(t, ok, "no value")
	l, ok = ParseHeader([]string{"TEXT rps_fractional=1,cpu_utilization=1"})
	assert.True(t, ok)
	assert.Equal(t, Load{QPS: 1, CPU: 1}, l)
}

// TestParseAllocs: the text form, what a backend sends on every response,
// costs no allocation.
func TestParseAllocs(t *testing.T) {
	v := []string{"TEXT cpu_utilization=0.3, rps_fractional=10.0, eps=0.1"}
	allocs := testing.AllocsPerRun(100, func() {
		if _, ok := ParseHeader(v); !ok {
			t.Fatal("parse failed")
		}
	})
	assert.Zero(t, allocs)
}

func BenchmarkParse(b *testing.B) {
	v := []string{"TEXT cpu_utilization=0.3, application_utilization=0.25, rps_fractional=10.0, eps=0.1"}
	b.ReportAllocs()
	for b.Loop() {
		ParseHeader(v)
	}
}

// FuzzParse: any header value parses or is refused, never panics, and what
// parses weighs as a finite number 0 or more.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"TEXT cpu_utilization=0.3, rps_fractional=10.0, eps=0.1",
		"TEXT cpu_utilization:0.7,application_utilization:0.8,rps_fractional:1000,eps:2,named_metrics.foo:123",
		`JSON {"cpu_utilization": 0.3, "rps_fractional": 10.0}`,
		"cpu_utilization=0.5,,", "TEXT", "=", ":", "a=1,a=2", "eps=-1,rps_fractional=1,cpu_utilization=1e-300",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, ok := Parse(s)
		if !ok {
			if l != (Load{}) {
				t.Fatalf("Parse(%q) refused the report but returned %+v", s, l)
			}
			return
		}
		for _, v := range []float64{l.CPU, l.Application, l.Mem, l.QPS, l.EPS} {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("Parse(%q) = %+v: not finite", s, l)
			}
		}
		for _, p := range []float64{0, 1, 2} {
			if w := l.Weight(p); !(w >= 0) || math.IsInf(w, 0) {
				t.Fatalf("Parse(%q).Weight(%v) = %v", s, p, w)
			}
		}
		l2, ok2 := ParseHeader(strings.SplitAfter(s, ","))
		_ = l2
		_ = ok2 // splitting differently must not panic either
	})
}
