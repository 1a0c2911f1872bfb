package sim

import (
	"fmt"
	"testing"
)

func TestScratch(t *testing.T) {
	cc := DefaultCapacities()
	cc.Warmup = 600_000
	for _, p := range CapacityPolicies(cc) {
		r := RunCapacities(cc, p)
		fmt.Printf("cap %s tv %.3f p50 %.2f p99 %.1f shares %.3f\n", p.Name, r.TV, r.P50, r.P99, r.Shares)
	}
}
