// Command sim runs the balancing-quality simulation of package
// github.com/tinylb/lb/bench/sim and prints markdown tables:
//
//	go run ./bench/cmd/sim -json bench/results/sim.json > bench/results/sim.md
//
// The workloads, every strategy on the same arrivals (common random
// numbers), all in simulated time so that the output depends on the flags
// only:
//
//  1. Slow backend: ten backends, one 10× slower, Poisson arrivals at
//     -loads of the total capacity; p50/p99 latency, share per backend.
//     And the same backend turning slow half-way through the run.
//  2. Capacities: backends of capacities 1 1 2 2 4 4 8 8 16 16, all
//     configured with weight 1; the distance of each strategy's split
//     from the ideal one (share ∝ capacity).
//  3. Hot keys: Zipf keys through consistent hashing with and without
//     bounded loads; max/avg load and the keys moved when a backend joins.
//  4. Herd: 20 independent balancers in front of 100 backends, arrivals
//     in bursts; the most loaded backend ÷ the mean. And n balls into n
//     bins, against Mitzenmacher's two-choices bound.
//  5. The consistent-hash ring's balance and the keys moved on
//     add/remove at 10 and 100 backends (one million keys key-0 …
//     key-999999 on nginx's ketama ring).
//
// -short runs every workload with a tenth of the requests and the ring on
// fewer keys, for a quick look.
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
	Config     sim.Config
	Runs       []sim.Result
	MidRun     []MidRow
	Capacities []sim.CapResult
	// CapacitiesCold: the same from a cold start.
	CapacitiesCold []sim.CapResult
	HotKeys        []sim.HotResult
	Herd           []sim.HerdResult
	Bins           []sim.BinsResult
	Hash           []HashSummary
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
	requests := flag.Int("requests", def.Requests, "measured requests per strategy and load (slow-backend workloads)")
	warmup := flag.Int("warmup", def.Warmup, "requests sent first and not measured")
	seed := flag.Uint64("seed", def.Seed, "random seed")
	loads := flag.String("loads", "0.7,0.1", "comma-separated loads (fractions of the total capacity)")
	nkeys := flag.Int("keys", 1_000_000, "keys for the consistent-hash ring measurement")
	sets := flag.Int("sets", 50, "name sets (10.T.0.x, T = 0…sets-1) for the consistent-hash ring measurement")
	short := flag.Bool("short", false, "a tenth of the requests everywhere, 100 000 keys and 5 name sets for the ring")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file")
	flag.Parse()

	div := 1
	if *short {
		div, *nkeys, *sets = 10, 100_000, 5
	}
	out := Output{Config: def}
	out.Config.Requests, out.Config.Warmup, out.Config.Seed = *requests/div, *warmup/div, *seed
	var ls []float64
	for _, s := range strings.Split(*loads, ",") {
		load, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || load <= 0 {
			log.Fatalf("bad load %q", s)
		}
		ls = append(ls, load)
	}

	slowBackend(&out, ls)
	midRun(&out)
	capacities(&out, *seed, div)
	hotKeys(&out, *seed, div)
	herd(&out, *seed, div)
	ring(&out, *nkeys, *sets)

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
