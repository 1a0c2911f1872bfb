// Command sim runs the balancing-quality simulation of package
// github.com/tinylb/lb/bench/sim and prints markdown tables:
//
//	go run ./bench/cmd/sim -json bench/results/sim.json > bench/results/sim.md
//
// Part 1: ten backends, one 10× slower, Poisson arrivals at -loads of the
// total capacity, every strategy; p50/p99 latency and the slow backend's
// share. Part 2: the consistent-hash ring's balance and the keys moved on
// add/remove at 10 and 100 backends (one million keys key-0 … key-999999 on
// nginx's ketama ring). Everything is simulated: the output depends on the
// flags only.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/tinylb/lb/bench/sim"
)

// Output is what -json writes, for bench/cmd/plot.
type Output struct {
	Config sim.Config
	Runs   []sim.Result
	Hash   []HashSummary
}

// HashSummary is the consistent-hash measurement at one backend count.
type HashSummary struct {
	Backends int
	Keys     int
	Sets     int
	First    sim.HashResult // name set T=0
	// Over all name sets: mean, min, max.
	MaxAvg, AddMoved, RemoveMoved [3]float64
	Stray, DownDiffers            int // totals, should be 0
}

func main() {
	def := sim.Default()
	requests := flag.Int("requests", def.Requests, "measured requests per strategy and load")
	warmup := flag.Int("warmup", def.Warmup, "requests sent first and not measured")
	seed := flag.Uint64("seed", def.Seed, "random seed")
	loads := flag.String("loads", "0.7,0.1", "comma-separated loads (fractions of the total capacity)")
	nkeys := flag.Int("keys", 1_000_000, "keys for the consistent-hash measurement")
	sets := flag.Int("sets", 50, "name sets (10.T.0.x, T = 0…sets-1) for the consistent-hash measurement")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file")
	flag.Parse()

	out := Output{Config: def}
	out.Config.Requests, out.Config.Warmup, out.Config.Seed = *requests, *warmup, *seed

	fmt.Printf("## Slow backend: %d backends, backend %d is %.0f× slower (exp. service, mean %.0f ms vs %.0f ms), one FIFO server each\n\n",
		def.Backends, def.Slow+1, def.Factor, def.MeanMS*def.Factor, def.MeanMS)
	fmt.Printf("Open-loop Poisson arrivals; total capacity %.0f req/s; %d measured requests after %d warm-up, seed %d.\n",
		def.Capacity(), *requests, *warmup, *seed)
	for _, ls := range strings.Split(*loads, ",") {
		load, err := strconv.ParseFloat(strings.TrimSpace(ls), 64)
		if err != nil || load <= 0 {
			log.Fatalf("bad load %q", ls)
		}
		c := out.Config
		c.Load = load
		fmt.Printf("\n### Load %.0f%% (%.0f req/s; an even 10%% share offers the slow backend %.2f× its capacity)\n\n",
			load*100, c.Rate(), 0.1*c.Rate()*c.MeanMS*c.Factor/1000)
		fmt.Println("| strategy | slow share | slow backend load | p50 ms | p90 ms | p99 ms | p99.9 ms | mean ms | max ms | slow max queue |")
		fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
		for _, p := range sim.Policies(c) {
			r := sim.Run(c, p)
			out.Runs = append(out.Runs, r)
			flag := ""
			if r.SlowUtil >= 1 {
				flag = " (overloaded: grows with run length)"
			}
			fmt.Printf("| %s — %s | %.2f%% | %.2f%s | %.2f | %.2f | %s | %s | %.2f | %s | %d |\n",
				r.Policy, r.Note, r.SlowShare*100, r.SlowUtil, flag, r.P50, r.P90, ms(r.P99), ms(r.P999), r.Mean, ms(r.Max), r.SlowMaxQueue)
		}
	}

	keys := sim.HashKeys(*nkeys)
	fmt.Printf("\n## Consistent hash (strategy.NewConsistentHash, 160 points per weight unit): %d keys key-0…, name sets 10.T.0.i:80, T = 0…%d\n\n", *nkeys, *sets-1)
	fmt.Println("| backends | max/avg (T=0) | min/avg (T=0) | max/avg over sets: mean [min–max] | add 1: moved (ideal) | add 1: moved over sets | remove 1: moved (ideal) | remove 1: moved over sets | keys moved elsewhere |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, n := range []int{10, 100} {
		hs := HashSummary{Backends: n, Keys: *nkeys, Sets: *sets}
		var mx, ad, rm []float64
		for t := range *sets {
			r := sim.HashBalance(t, n, keys)
			if t == 0 {
				hs.First = r
			}
			mx, ad, rm = append(mx, r.MaxAvg), append(ad, r.AddMoved), append(rm, r.RemoveMoved)
			hs.Stray += r.AddStray + r.RemoveStray
			hs.DownDiffers += r.DownDiffers
		}
		hs.MaxAvg, hs.AddMoved, hs.RemoveMoved = stats(mx), stats(ad), stats(rm)
		out.Hash = append(out.Hash, hs)
		f := hs.First
		fmt.Printf("| %d | %.3f | %.3f | %.3f [%.3f–%.3f] | %.2f%% (%.2f%%) | %.2f%% [%.2f–%.2f] | %.2f%% (%.2f%%) | %.2f%% [%.2f–%.2f] | %d (down ≠ removed: %d) |\n",
			n, f.MaxAvg, f.MinAvg, hs.MaxAvg[0], hs.MaxAvg[1], hs.MaxAvg[2],
			f.AddMoved*100, 100/float64(n+1), hs.AddMoved[0]*100, hs.AddMoved[1]*100, hs.AddMoved[2]*100,
			f.RemoveMoved*100, 100/float64(n), hs.RemoveMoved[0]*100, hs.RemoveMoved[1]*100, hs.RemoveMoved[2]*100,
			hs.Stray, hs.DownDiffers)
	}

	if *jsonOut != "" {
		b, err := json.MarshalIndent(out, "", "\t")
		if err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
			log.Fatal(err)
		}
	}
}

// ms formats milliseconds, switching to seconds past 10 s.
func ms(v float64) string {
	if v >= 10_000 {
		return fmt.Sprintf("%.0f s", v/1000)
	}
	return fmt.Sprintf("%.2f", v)
}

// stats returns mean, min and max.
func stats(xs []float64) [3]float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return [3]float64{s / float64(len(xs)), slices.Min(xs), slices.Max(xs)}
}
