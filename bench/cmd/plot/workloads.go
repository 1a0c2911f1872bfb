package main

import (
	"fmt"
	"math"
	"path/filepath"
)

// simRun is the part of a bench/sim Result the workload plots read.
type simRun struct {
	Policy, Note   string
	Load           float64
	P50, P99, P999 float64
	Shares         []float64
	Imbalance      float64   // herd
	After          *simPhase // mid-run
	TV             float64   // capacities
	Ideal          []float64 // capacities
	Factor         float64   // hot keys
	ShareMaxAvg    float64
	InFlightMaxAvg float64
	KeysMoved      float64
	OffFirst       float64
	Instances      int // herd
	MaxQueue       int
}

type simPhase struct {
	P50, P99, SlowShare float64
}

// simWorkloads is the rest of bench/cmd/sim's JSON.
type simWorkloads struct {
	MidRun []struct {
		Run, Healthy simRun
		HeldTo       string
	}
	Capacities     []simRun
	CapacitiesCold []simRun
	HotKeys        []simRun
	Herd           []simRun
}

// workloadCharts writes one SVG per workload of bench/cmd/sim.
func workloadCharts(dir string, s simWorkloads) {
	if len(s.MidRun) > 0 {
		write(filepath.Join(dir, "sim-slow-midrun.svg"), midRunChart(s))
	}
	if len(s.Capacities) > 0 {
		write(filepath.Join(dir, "sim-capacities.svg"), capacityChart(s.Capacities, s.CapacitiesCold))
	}
	if len(s.HotKeys) > 0 {
		write(filepath.Join(dir, "sim-hotkeys.svg"), hotKeyChart(s.HotKeys))
	}
	if len(s.Herd) > 0 {
		write(filepath.Join(dir, "sim-herd.svg"), herdChart(s.Herd))
	}
}

var none = math.NaN()

func midRunChart(s simWorkloads) string {
	g := group{cols: []column{{title: "after the change: p50 (dot), p99 (bar), ms, log", log: true},
		{title: "share sent to the slow backend after the change", top: 0.12, ref: 0.1},
		{title: "healthy-run p99 (bar), ms, log", log: true}}}
	for _, m := range s.MidRun {
		a := m.Run.After
		g.rows = append(g.rows, m.Run.Policy)
		g.tips = append(g.tips, m.Run.Note)
		bad := a.P99 > 2*m.Healthy.After.P99
		g.cols[0].bars = append(g.cols[0].bars, hbar{v: a.P99, dot: a.P50, mark: none, text: fmtMS(a.P99) + " · held to " + orDash(m.HeldTo), bad: bad})
		g.cols[1].bars = append(g.cols[1].bars, hbar{v: a.SlowShare, dot: none, mark: none, text: fmt.Sprintf("%.1f%%", a.SlowShare*100)})
		g.cols[2].bars = append(g.cols[2].bars, hbar{v: m.Healthy.After.P99, dot: m.Healthy.After.P50, mark: none, text: fmtMS(m.Healthy.After.P99)})
	}
	return columnChart("Simulation: one of 10 backends turns 10× slower half-way (bench/cmd/sim, workload 1b)",
		"Requests arriving after the change. Held to: highest of p50/p90/p95/p99/p99.9 within 2× the same strategy with no backend slow. Dashed: an even share (10 %).",
		"Orange: p99 more than 2× the healthy run's. Hover a name for the strategy.", []group{g})
}

func capacityChart(rs, cold []simRun) string {
	g := group{cols: []column{{title: "TV from share ∝ capacity, settled (0 = ideal)", top: 0.4},
		{title: "TV, the first 60 s from a cold start", top: 0.4},
		{title: "settled: p50 (dot), p99 (bar), ms, log", log: true, top: 1000}}}
	for k, r := range rs {
		g.rows = append(g.rows, r.Policy)
		g.tips = append(g.tips, r.Note)
		g.cols[0].bars = append(g.cols[0].bars, hbar{v: r.TV, dot: none, mark: none, text: fmt.Sprintf("%.3f", r.TV), bad: r.TV > 0.1})
		c := none
		if k < len(cold) {
			c = cold[k].TV
		}
		g.cols[1].bars = append(g.cols[1].bars, hbar{v: c, dot: none, mark: none, text: fmt.Sprintf("%.3f", c), bad: c > 0.1})
		g.cols[2].bars = append(g.cols[2].bars, hbar{v: r.P99, dot: r.P50, mark: none, text: fmtMS(r.P99), bad: r.P99 > 1000})
	}
	return columnChart("Simulation: capacities 1 1 2 2 4 4 8 8 16 16, every backend configured with weight 1 (workload 2)",
		"How close each strategy's split gets to the ideal one (share ∝ capacity), once settled and from a cold start, and what it costs in latency.",
		"Orange: more than 10 % of the requests on the wrong backend, or a p99 past 1 s (queues that grow). Hover a name for the strategy.", []group{g})
}

func hotKeyChart(rs []simRun) string {
	g := group{cols: []column{{title: "requests per backend: max/avg (red tick: c)", top: 2.5},
		{title: "in flight per backend: max/avg (red tick: c)", top: 3},
		{title: "keys whose backend changes when an 11th joins", top: 0.5, ref: 1.0 / 11},
		{title: "requests not on their key's ring backend", top: 0.5}}}
	for _, r := range rs {
		g.rows = append(g.rows, r.Policy)
		g.tips = append(g.tips, r.Note)
		c := none
		if r.Factor > 0 {
			c = r.Factor
		}
		g.cols[0].bars = append(g.cols[0].bars, hbar{v: r.ShareMaxAvg, dot: none, mark: c, text: fmt.Sprintf("%.3f", r.ShareMaxAvg), bad: r.ShareMaxAvg > 1/r.Load})
		g.cols[1].bars = append(g.cols[1].bars, hbar{v: r.InFlightMaxAvg, dot: none, mark: c, text: fmt.Sprintf("%.2f", r.InFlightMaxAvg)})
		g.cols[2].bars = append(g.cols[2].bars, hbar{v: r.KeysMoved, dot: none, mark: none, text: fmt.Sprintf("%.1f%%", r.KeysMoved*100)})
		g.cols[3].bars = append(g.cols[3].bars, hbar{v: r.OffFirst, dot: none, mark: none, text: fmt.Sprintf("%.1f%%", r.OffFirst*100)})
	}
	return columnChart("Simulation: 10 000 Zipf(1.1) keys over 10 backends, consistent hash with and without bounded loads (workload 3)",
		"Max/avg of the requests each backend got and of those in flight at once; keys moved: most frequent backend; dashed: the new backend's fair share 1/11.",
		"Orange: the busiest backend is offered more than its capacity (its queue grows for as long as the run lasts).", []group{g})
}

func herdChart(rs []simRun) string {
	var groups []group
	for _, r := range rs {
		if len(groups) == 0 || groups[len(groups)-1].title != loadTitle(r.Load) {
			groups = append(groups, group{title: loadTitle(r.Load), cols: []column{
				{title: "most in flight at one backend ÷ mean, per burst", top: 20},
				{title: "p50 (dot), p99 (bar), ms, log", log: true, top: 100},
				{title: "most in flight at one backend in the run", top: 60, ref: float64(r.Instances)}}})
		}
		g := &groups[len(groups)-1]
		g.rows = append(g.rows, r.Policy)
		g.tips = append(g.tips, r.Note)
		g.cols[0].bars = append(g.cols[0].bars, hbar{v: r.Imbalance, dot: none, mark: none, text: fmt.Sprintf("%.2f", r.Imbalance)})
		g.cols[1].bars = append(g.cols[1].bars, hbar{v: r.P99, dot: r.P50, mark: none, text: fmtMS(r.P99)})
		g.cols[2].bars = append(g.cols[2].bars, hbar{v: float64(r.MaxQueue), dot: none, mark: none, text: fmt.Sprint(r.MaxQueue)})
	}
	return columnChart(fmt.Sprintf("Simulation: %d independent balancers × %d backends, bursts of one request per balancer (workload 4)", rs[0].Instances, len(rs[0].Shares)),
		"Each balancer has its own strategy object and counts only its own requests in flight; leastconn-shared is one object for all (global counts).",
		"Lower is better in every column. Dashed: a whole burst on one backend. Hover a name for the strategy.", groups)
}

func loadTitle(load float64) string { return fmt.Sprintf("Load %.0f%% of capacity", load*100) }

func orDash(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
