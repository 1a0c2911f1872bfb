package sim

import "math"

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
	MeanMS    float64 // mean service time, one request at a time
	Load      float64 // fraction of the total capacity
	Requests  int
	Warmup    int
	Seed      uint64
}

// DefaultHerd is 20 instances × 100 backends (1000 req/s each) at 70% load.
func DefaultHerd() HerdConfig {
	return HerdConfig{Instances: 20, Backends: 100, MeanMS: 1, Load: 0.7, Requests: 400_000, Warmup: 40_000, Seed: 1}
}

func (hc HerdConfig) workload() workload {
	capacity := float64(hc.Backends) * 1000 / hc.MeanMS
	w := workload{rate: hc.Load * capacity / float64(hc.Instances), instances: hc.Instances,
		requests: hc.Requests, warmup: hc.Warmup, seed: hc.Seed}
	for range hc.Backends {
		w.backends = append(w.backends, backendSpec{mean: hc.MeanMS / 1000, workers: 1, slowAt: math.Inf(1), slowBy: 1})
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
