package sim

import (
	"time"

	"github.com/tinylb/lb/internal/loadweight"
	"github.com/tinylb/lb/strategy"
)

// dynamicLineup returns the dynamic-weight policies: smooth weighted round
// robin whose Set.Weights an internal/loadweight Group sets every update
// period of simulated time, with gRFC A58's defaults otherwise (10 s
// blackout, 3 min expiry, penalty 1, factors within [0.01, 10]).
//
//   - dynamic-orca: from the backends' load reports, qps / utilization
//     over the period (an ORCA report, as gRPC's weighted_round_robin
//     reads it).
//   - dynamic-measured: from what the balancer sees of its own requests,
//     loadweight's Measured mode: successful requests per second per
//     request in flight, a moving average over 10 s.
func dynamicLineup(period float64) []Policy {
	swrr := func(Env) strategy.Strategy { return strategy.NewSmoothWeighted() }
	weigher := func(measured bool) func(Env) Weigher {
		return func(env Env) Weigher {
			g, err := loadweight.New(loadweight.Config{UpdatePeriod: time.Duration(period * float64(time.Second)), Measured: measured})
			if err != nil {
				panic("sim: " + err.Error()) // the config above is valid
			}
			return &groupWeigher{g: g, configured: ones(env.Backends)}
		}
	}
	return []Policy{
		{Name: "dynamic-orca", Note: "SWRR, weights from backend load reports (gRFC A58: qps / utilization)", New: swrr, Weigher: weigher(false)},
		{Name: "dynamic-measured", Note: "SWRR, weights measured from latency and errors (loadweight Measured mode)", New: swrr, Weigher: weigher(true)},
	}
}

// groupWeigher feeds a loadweight.Group.
type groupWeigher struct {
	g          *loadweight.Group
	configured []int
}

func (w *groupWeigher) Observe(now time.Time, i int, rtt time.Duration, failed bool) {
	w.g.Observe(i, rtt, failed, now)
}

func (w *groupWeigher) Report(now time.Time, i int, r LoadReport) {
	w.g.Report(i, loadweight.Load{QPS: r.QPS, CPU: r.Utilization, EPS: r.EPS}, now)
}

func (w *groupWeigher) Weights(now time.Time, out []int) (int, bool) {
	copy(out, w.g.Weights(now, w.configured))
	return loadweight.Scale, true
}

func ones(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = 1
	}
	return out
}
