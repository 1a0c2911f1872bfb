package sim

// MidRun is the slow-backend scenario with the backend turning slow
// half-way through the measured requests: until then all backends serve at
// MeanMS, from then on backend Slow at Factor × MeanMS. The arrival rate is
// c's (Load × the capacity with the slow backend slow), so the first half
// runs below Load.
func MidRun(c Config) Config {
	c.SlowAt = float64(c.Warmup+c.Requests/2) / c.Rate()
	return c
}

// Healthy is c with the slow backend never slow but the same arrivals (the
// rate still counts it slow) and the same phases: the baseline HeldTo
// compares against.
func Healthy(c Config) Config {
	c.NeverSlow = true
	return c
}

// Quantiles are the latency quantiles HeldTo walks, with their names.
var Quantiles = []struct {
	Name string
	Q    float64
	Of   func(*Phase) float64
}{
	{"p50", 0.5, func(p *Phase) float64 { return p.P50 }},
	{"p90", 0.9, func(p *Phase) float64 { return p.P90 }},
	{"p95", 0.95, func(p *Phase) float64 { return p.P95 }},
	{"p99", 0.99, func(p *Phase) float64 { return p.P99 }},
	{"p99.9", 0.999, func(p *Phase) float64 { return p.P999 }},
}

// HeldTo returns the highest of [Quantiles] up to which got stays within
// tol × base at every quantile, the way the Linkerd blog's "Beyond Round
// Robin" (2016) reads its latency curves ("round robin degraded above
// p95"); "" if even the median does not.
func HeldTo(got, base *Phase, tol float64) string {
	held := ""
	for _, q := range Quantiles {
		if q.Of(got) > tol*q.Of(base) {
			break
		}
		held = q.Name
	}
	return held
}

// PhaseOf returns the phase of r that arrived after the slow backend
// turned slow, or, if it was slow all along, r as a whole.
func PhaseOf(r Result) *Phase {
	if r.After != nil {
		return r.After
	}
	return &Phase{Requests: r.Requests, P50: r.P50, P90: r.P90, P95: r.P95, P99: r.P99, P999: r.P999, SlowShare: r.SlowShare}
}
