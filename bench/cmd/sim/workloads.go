package main

import (
	"fmt"
	"strings"

	"github.com/tinylb/lb/bench/sim"
)

// capacities is workload 2: unequal capacities behind equal weights.
func capacities(out *Output, seed uint64, div int) {
	cc := sim.DefaultCapacities()
	cc.Seed, cc.Requests, cc.Warmup = seed, cc.Requests/div, cc.Warmup/div
	cold := cc.Cold(60 / float64(div))
	caps := strings.Trim(fmt.Sprint(cc.Caps), "[]")
	fmt.Printf("\n## 2. Unequal capacities, equal weights: %d backends of capacity %s × %.0f req/s, all configured with weight 1\n\n",
		len(cc.Caps), caps, 1000/cc.UnitMS)
	fmt.Printf("One FIFO server each, exponential service; load %.0f%% (%.0f req/s). Settled: %d warm-up requests (%.0f s), then %d measured; "+
		"cold: the first %d requests (%.0f s) from a cold start, A58's 10 s blackout included. Dynamic weights are refreshed every %.0f s of "+
		"simulated time. TV = total variation distance from the ideal split (share ∝ capacity): ½ Σ |share − ideal|, the fraction of "+
		"requests on the wrong backend.\n\n",
		cc.Load*100, cc.Load*cc.Capacity(), cc.Warmup, float64(cc.Warmup)/(cc.Load*cc.Capacity()), cc.Requests,
		cold.Requests, float64(cold.Requests)/(cold.Load*cold.Capacity()), cc.Period)
	n := len(cc.Caps)
	fmt.Println("| strategy | TV settled | TV cold | capacity-16 pair (ideal " + pct(2*cc.Ideal()[n-1]) +
		") | capacity-1 pair (ideal " + pct(2*cc.Ideal()[0]) + ") | p50 ms | p99 ms | p99 ms cold |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, p := range sim.CapacityPolicies(cc) {
		r := sim.RunCapacities(cc, p)
		c := sim.RunCapacities(cold, p)
		out.Capacities = append(out.Capacities, r)
		out.CapacitiesCold = append(out.CapacitiesCold, c)
		fmt.Printf("| %s — %s | %.3f | %.3f | %s | %s | %.2f | %s | %s |\n", r.Policy, r.Note, r.TV, c.TV,
			pct(r.Shares[n-1]+r.Shares[n-2]), pct(r.Shares[0]+r.Shares[1]), r.P50, ms(r.P99), ms(c.P99))
	}
}

// hotKeys is workload 3: Zipf keys, plain and bounded-load hashing.
func hotKeys(out *Output, seed uint64, div int) {
	hc := sim.DefaultHotKeys()
	hc.Seed, hc.Requests, hc.Warmup = seed, hc.Requests/div, hc.Warmup/div
	fmt.Printf("\n## 3. Hot keys: %d keys, Zipf s = %.1f, %d backends × %d workers (%.0f req/s each), load %.0f%%\n\n",
		hc.Keys, hc.Zipf, hc.Backends, hc.Workers, hc.Capacity()/float64(hc.Backends), hc.Load*100)
	fmt.Printf("%d measured requests after %d warm-up. share max/avg: most requests sent to one backend ÷ the mean; "+
		"in-flight max/avg: mean over arrivals of the most requests in flight at one backend ÷ the mean; "+
		"moved: requests (same arrivals and keys) sent elsewhere once backend %d joins (traffic unchanged), ideal 1/(n+1) = %s; "+
		"keys moved: keys whose most frequent backend changes; off first: requests not on their key's plain-ring backend; "+
		"spread: backends per key, weighted by requests.\n\n",
		hc.Requests, hc.Warmup, hc.Backends+1, pct(1/float64(hc.Backends+1)))
	fmt.Println("| strategy | c | share max/avg | in-flight max/avg | p50 ms | p99 ms | moved on join | keys moved | off first | spread |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
	for _, p := range sim.HotKeyPolicies(hc) {
		r := sim.RunHotKeys(hc, p)
		out.HotKeys = append(out.HotKeys, r)
		c := "—"
		if r.Factor > 0 {
			c = fmt.Sprintf("%.2f", r.Factor)
		}
		fmt.Printf("| %s — %s | %s | %.3f | %.3f | %.2f | %s | %s | %s | %s | %.2f |\n", r.Policy, r.Note, c, r.ShareMaxAvg, r.InFlightMaxAvg,
			r.P50, ms(r.P99), pct(r.Moved), pct(r.KeysMoved), pct(r.OffFirst), r.Spread)
	}
}

// herd is workload 4: many balancers, each with its own counts.
func herd(out *Output, seed uint64, div int) {
	hc := sim.DefaultHerd()
	hc.Seed, hc.Requests, hc.Warmup = seed, hc.Requests/div, hc.Warmup/div
	fmt.Printf("\n## 4. Herd: %d independent balancers × %d backends, arrivals in bursts of one request per balancer\n\n", hc.Instances, hc.Backends)
	fmt.Printf("Each balancer has its own strategy object and sees only its own requests in flight. One FIFO server per backend, "+
		"mean %.0f ms; %d measured requests after %d warm-up per load. max/mean: mean over bursts of the most requests in flight "+
		"at one backend ÷ the mean over the backends; max queue: the most in flight at one backend in the run (a whole burst is %d).\n\n",
		hc.MeanMS, hc.Requests, hc.Warmup, hc.Instances)
	fmt.Println("| load | strategy | max/mean in flight | p50 ms | p99 ms | p99.9 ms | max queue |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, load := range sim.HerdLoads {
		hc.Load = load
		for _, p := range sim.HerdPolicies() {
			r := sim.RunHerd(hc, p)
			out.Herd = append(out.Herd, r)
			fmt.Printf("| %.0f%% | %s — %s | %.2f | %.2f | %s | %s | %d |\n", load*100, r.Policy, r.Note, r.Imbalance, r.P50, ms(r.P99), ms(r.P999), r.MaxQueue)
		}
	}
	trials := max(2000/div, 100)
	fmt.Printf("\nn balls into n bins (n picks, none finishing; one balancer), mean over %d trials of the fullest bin; "+
		"Mitzenmacher 2001: ≈ ln n / ln ln n for one uniform choice, ln ln n / ln 2 + O(1) for two.\n\n", trials)
	fmt.Println("| strategy | n | fullest bin: mean | max | ln n / ln ln n | ln ln n / ln 2 |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, n := range []int{100, 1000, 10_000} {
		for _, p := range sim.BinsPolicies() {
			b := sim.Bins(n, max(trials*100/n, 100), seed, p)
			out.Bins = append(out.Bins, b)
			fmt.Printf("| %s | %d | %.2f | %d | %.2f | %.2f |\n", b.Policy, n, b.MeanMax, b.MaxMax, b.OneChoice, b.TwoChoices)
		}
	}
}

func pct(v float64) string { return fmt.Sprintf("%.2f%%", v*100) }
