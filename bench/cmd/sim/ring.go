package main

import (
	"fmt"

	"github.com/tinylb/lb/bench/sim"
)

// ring measures the consistent-hash ring over nkeys keys and sets name
// sets at 10 and 100 backends.
func ring(out *Output, nkeys, sets int) {
	keys := sim.HashKeys(nkeys)
	fmt.Printf("\n## Consistent hash (strategy.NewConsistentHash, 160 points per weight unit): %d keys key-0…, name sets 10.T.0.i:80, T = 0…%d\n\n", nkeys, sets-1)
	fmt.Println("| backends | max/avg (T=0) | min/avg (T=0) | max/avg over sets: mean [min–max] | add 1: moved (ideal) | add 1: moved over sets | remove 1: moved (ideal) | remove 1: moved over sets | keys moved elsewhere |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, n := range []int{10, 100} {
		hs := HashSummary{Backends: n, Keys: nkeys, Sets: sets}
		var mx, ad, rm []float64
		for t := range sets {
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

}
