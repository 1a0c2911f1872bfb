package sim

import (
	"github.com/tinylb/lb/strategy"
)

// leastRequest is Envoy's least_request with choices draws per pick from
// the instance's own random stream.
func leastRequest(choices int) func(Env) strategy.Strategy {
	return func(env Env) strategy.Strategy {
		s, err := strategy.NewLeastRequest(strategy.LeastRequestConfig{Choices: choices, Rand: env.Rand.Uint64})
		if err != nil {
			panic("sim: " + err.Error()) // the choice counts used here are valid
		}
		return s
	}
}

// peakEWMA is Finagle's peak EWMA (τ 10 s) on the simulated clock.
func peakEWMA(env Env) strategy.Strategy {
	s, err := strategy.NewPeakEWMA(strategy.PeakEWMAConfig{Rand: env.Rand.Uint64, Now: func() int64 { return env.Now().UnixNano() }})
	if err != nil {
		panic("sim: " + err.Error())
	}
	return s
}

// BinsPolicies are the pickers of the balls-into-bins table: one uniform
// choice (the simulation's own, and LeastRequest with one draw, which is
// weighted random), and LeastRequest with two and three draws.
func BinsPolicies() []Policy {
	return []Policy{Uniform,
		{Name: "leastrequest-1", Note: "least_request, choice_count 1 (random)", New: leastRequest(1)},
		{Name: "leastrequest", Note: "least_request, choice_count 2 (P2C)", New: leastRequest(2)},
		{Name: "leastrequest-3", Note: "least_request, choice_count 3", New: leastRequest(3)},
	}
}
