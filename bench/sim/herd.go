package sim

import (
	"math"

	"github.com/tinylb/lb/strategy"
)

// HerdConfig is the herd workload: Instances independent balancers, each
// with its own strategy object and so its own in-flight counts, in front
// of the same Backends. Arrivals come in bursts: each arrival epoch sends
// one request through every instance at the same instant, as when a
// fleet of front ends all receive a request at once. Least connections
// over counts that each instance keeps alone sees nearly every backend
// idle and breaks the tie the same way in every instance, so a burst lands
// on one backend; random two-choice picks (Mitzenmacher 2001) do not.
type HerdConfig struct {
	Instances int
	Backends  int
	Workers   int     // requests each backend serves at once
	MeanMS    float64 // mean service time
	Load      float64 // fraction of the total capacity
	Requests  int
	Warmup    int
	Seed      uint64
}

// DefaultHerd is 20 instances × 100 backends (1000 req/s each) at 30%
// load, where each instance has about 1.5 requests in flight on average:
// its own counts tell it little, and the herd shows. HerdLoads are the
// loads bench/cmd/sim sweeps.
func DefaultHerd() HerdConfig {
	return HerdConfig{Instances: 20, Backends: 100, Workers: 1, MeanMS: 1, Load: 0.3, Requests: 200_000, Warmup: 20_000, Seed: 1}
}

// HerdLoads are the loads of the herd sweep: the herd costs most where
// each instance knows least (low load) and least where its own counts
// are a fair sample of the backends' (high load).
var HerdLoads = []float64{0.1, 0.3, 0.5, 0.7, 0.9}

// HerdPolicies returns [Lineup] and, for reference, least connections
// with one strategy object shared by all the instances: the counts of a
// single balancer, the most a least-connections balancer can know.
func HerdPolicies() []Policy {
	var shared strategy.Strategy
	return append(Lineup(), Policy{Name: "leastconn-shared", Note: "least connections, one strategy object for all instances (global counts)",
		New: func(env Env) strategy.Strategy {
			if env.Instance == 0 { // a run builds its instances in order: a new object per run
				shared = strategy.NewLeastConn()
			}
			return shared
		}})
}

func (hc HerdConfig) workload() workload {
	capacity := float64(hc.Backends*hc.Workers) * 1000 / hc.MeanMS
	w := workload{rate: hc.Load * capacity / float64(hc.Instances), instances: hc.Instances,
		requests: hc.Requests, warmup: hc.Warmup, seed: hc.Seed}
	for range hc.Backends {
		w.backends = append(w.backends, backendSpec{mean: hc.MeanMS / 1000, workers: hc.Workers, slowAt: math.Inf(1), slowBy: 1})
	}
	return w
}

// HerdResult is one policy under a HerdConfig: Result.Imbalance is the
// mean over bursts of the most requests in flight at one backend ÷ the
// mean over the backends.
type HerdResult struct {
	Result
	Instances int
}

// RunHerd simulates p under hc.
func RunHerd(hc HerdConfig, p Policy) HerdResult {
	e := run(hc.workload(), p)
	r := HerdResult{Result: e.result(p), Instances: hc.Instances}
	r.Load = hc.Load
	return r
}
