package sim

import (
	"fmt"
	"math"

	"github.com/tinylb/lb/strategy"
)

// CapConfig is the heterogeneous-capacity workload: backends whose
// capacities differ (Caps, in units of one server with mean service time
// UnitMS) but that the balancer is configured with weight 1 each, so only
// a strategy that learns load can give them shares ∝ capacity.
type CapConfig struct {
	Caps     []float64
	UnitMS   float64 // mean service time of a capacity-1 backend, ms
	Load     float64 // arrival rate as a fraction of the total capacity
	Requests int
	Warmup   int
	Seed     uint64
	// Period is the weight update period of the dynamic-weight policies,
	// s (gRFC A58's weight_update_period; its default 1 s).
	Period float64
}

// DefaultCapacities is 10 backends of capacities 1 1 2 2 4 4 8 8 16 16
// (100 req/s per unit) at 70% of the total: 4340 req/s, 600 000 warm-up
// requests (138 s: past A58's 10 s blackout and the draining of the
// queues that built up during it) and 200 000 measured (46 s). Cold is
// the same from a cold start: the first 60 s, blackout included.
func DefaultCapacities() CapConfig {
	return CapConfig{Caps: []float64{1, 1, 2, 2, 4, 4, 8, 8, 16, 16}, UnitMS: 10, Load: 0.7,
		Requests: 200_000, Warmup: 600_000, Seed: 1, Period: 1}
}

// Cold is cc measured from the first request on, over the simulated
// seconds given.
func (cc CapConfig) Cold(seconds float64) CapConfig {
	cc.Warmup, cc.Requests = 0, int(seconds*cc.Load*cc.Capacity())
	return cc
}

// Capacity is the total service rate, requests per second.
func (cc CapConfig) Capacity() float64 {
	var s float64
	for _, c := range cc.Caps {
		s += c * 1000 / cc.UnitMS
	}
	return s
}

// Ideal is the split ∝ capacity.
func (cc CapConfig) Ideal() []float64 {
	var s float64
	for _, c := range cc.Caps {
		s += c
	}
	out := make([]float64, len(cc.Caps))
	for i, c := range cc.Caps {
		out[i] = c / s
	}
	return out
}

func (cc CapConfig) workload() workload {
	w := workload{rate: cc.Load * cc.Capacity(), instances: 1, requests: cc.Requests, warmup: cc.Warmup, seed: cc.Seed, period: cc.Period}
	for _, c := range cc.Caps {
		w.backends = append(w.backends, backendSpec{mean: cc.UnitMS / 1000 / c, workers: 1, slowAt: math.Inf(1), slowBy: 1})
	}
	return w
}

// CapacityPolicies returns [Lineup] (weights 1: the capacities are
// unknown), the dynamic-weight policies, and SWRR with weights = capacity
// as the reference a user who knew the capacities would configure.
func CapacityPolicies(cc CapConfig) []Policy {
	capW := make([]int, len(cc.Caps))
	for i, c := range cc.Caps {
		capW[i] = int(math.Round(c))
	}
	ps := append(Lineup(), dynamicLineup(cc.Period)...)
	return append(ps, Policy{Name: "swrr-capw", New: func(Env) strategy.Strategy { return strategy.NewSmoothWeighted() },
		Weights: capW, Note: fmt.Sprintf("smooth weighted RR, weights = capacity %v (known)", capW)})
}

// CapResult is one policy under a CapConfig.
type CapResult struct {
	Result
	Ideal []float64
	// TV is the total variation distance between the shares and Ideal:
	// ½ Σ |share − ideal|, the fraction of requests that would have to go
	// elsewhere for the split to be ideal.
	TV float64
}

// RunCapacities simulates p under cc.
func RunCapacities(cc CapConfig, p Policy) CapResult {
	e := run(cc.workload(), p)
	r := CapResult{Result: e.result(p), Ideal: cc.Ideal()}
	r.Load = cc.Load
	r.TV = TotalVariation(r.Shares, r.Ideal)
	return r
}

// TotalVariation is ½ Σ |p − q|.
func TotalVariation(p, q []float64) float64 {
	var s float64
	for i := range p {
		s += math.Abs(p[i] - q[i])
	}
	return s / 2
}
