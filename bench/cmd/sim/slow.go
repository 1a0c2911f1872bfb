package main

import (
	"fmt"
	"strings"

	"github.com/tinylb/lb/bench/sim"
)

// heldTol is how far above its healthy run a strategy's latency may be at
// a quantile and still count as holding it.
const heldTol = 2

// MidRow is one strategy in the mid-run workload: the run and its healthy
// baseline (same arrivals, no backend slow).
type MidRow struct {
	Run     sim.Result
	Healthy sim.Result
	HeldTo  string // highest quantile within heldTol × the baseline after the change
}

// slowBackend is workload 1: one backend 10× slower all along.
func slowBackend(out *Output, loads []float64) {
	c0 := out.Config
	fmt.Printf("## 1a. Slow backend: %d backends, backend %d is %.0f× slower (exp. service, mean %.0f ms vs %.0f ms), one FIFO server each\n\n",
		c0.Backends, c0.Slow+1, c0.Factor, c0.MeanMS*c0.Factor, c0.MeanMS)
	fmt.Printf("Open-loop Poisson arrivals; total capacity %.0f req/s; %d measured requests after %d warm-up, seed %d. "+
		"\"held to\": the highest of p50/p90/p95/p99/p99.9 up to which latency stays within %d× the same strategy's run with no backend slow (same arrivals).\n",
		c0.Capacity(), c0.Requests, c0.Warmup, c0.Seed, heldTol)
	for _, load := range loads {
		c := c0
		c.Load = load
		fmt.Printf("\n### Load %.0f%% (%.0f req/s; an even 10%% share offers the slow backend %.2f× its capacity)\n\n",
			load*100, c.Rate(), 0.1*c.Rate()*c.MeanMS*c.Factor/1000)
		fmt.Println("| strategy | slow share | slow backend load | p50 ms | p90 ms | p99 ms | p99.9 ms | mean ms | max ms | slow max queue | held to |")
		fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
		var rows []sim.Result
		for _, p := range sim.Policies(c) {
			r := sim.Run(c, p)
			base := sim.Run(sim.Healthy(c), p)
			out.Runs = append(out.Runs, r)
			rows = append(rows, r)
			flag := ""
			if r.SlowUtil >= 1 {
				flag = " (overloaded: grows with run length)"
			}
			fmt.Printf("| %s — %s | %.2f%% | %.2f%s | %.2f | %.2f | %s | %s | %.2f | %s | %d | %s |\n",
				r.Policy, r.Note, r.SlowShare*100, r.SlowUtil, flag, r.P50, r.P90, ms(r.P99), ms(r.P999), r.Mean, ms(r.Max),
				r.SlowMaxQueue, orNone(sim.HeldTo(sim.PhaseOf(r), sim.PhaseOf(base), heldTol)))
		}
		perBackend(fmt.Sprintf("Load %.0f%%", load*100), rows)
	}
}

// midRun is workload 1b: the same backend turning slow half-way.
func midRun(out *Output) {
	c := sim.MidRun(out.Config)
	fmt.Printf("\n## 1b. A backend turns slow mid-run: backend %d serves at %.0f ms until t = %.2f s (half-way through the measured requests), then at %.0f ms\n\n",
		c.Slow+1, c.MeanMS, c.SlowAt, c.MeanMS*c.Factor)
	fmt.Printf("Load %.0f%% of the capacity with the slow backend slow (%.0f req/s); \"after\" = requests arriving after the change; "+
		"held to: as above, against the same strategy with no backend slow, over the same requests.\n\n", c.Load*100, c.Rate())
	fmt.Println("| strategy | before: p99 ms | after: slow share | p50 ms | p90 ms | p95 ms | p99 ms | p99.9 ms | healthy p99 / p99.9 ms | held to |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
	var rows []sim.Result
	for _, p := range sim.Policies(c) {
		r := sim.Run(c, p)
		base := sim.Run(sim.Healthy(c), p)
		row := MidRow{Run: r, Healthy: base, HeldTo: sim.HeldTo(r.After, base.After, heldTol)}
		out.MidRun = append(out.MidRun, row)
		rows = append(rows, r)
		a := r.After
		fmt.Printf("| %s | %s | %.2f%% | %.2f | %.2f | %s | %s | %s | %s / %s | %s |\n", r.Policy, ms(r.Before.P99), a.SlowShare*100,
			a.P50, a.P90, ms(a.P95), ms(a.P99), ms(a.P999), ms(base.After.P99), ms(base.After.P999), orNone(row.HeldTo))
	}
	perBackend("Mid-run (whole measured run)", rows)
}

// perBackend prints each backend's share and p99 per strategy.
func perBackend(title string, rows []sim.Result) {
	n := len(rows[0].PerBackend)
	fmt.Printf("\n%s, per backend: share %% · p50 / p99 ms\n\n| strategy |", title)
	for i := range n {
		fmt.Printf(" b%d |", i+1)
	}
	fmt.Printf("\n|---|%s\n", strings.Repeat("---|", n))
	for _, r := range rows {
		fmt.Printf("| %s |", r.Policy)
		for _, b := range r.PerBackend {
			fmt.Printf(" %.1f · %s / %s |", b.Share*100, ms(b.P50), ms(b.P99))
		}
		fmt.Println()
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
