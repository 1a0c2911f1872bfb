package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// result is what a load run counted: calls that succeeded (with their
// latencies), calls that failed, and how long the run took.
type result struct {
	rpcs     int
	errors   int
	elapsed  time.Duration
	p50      uint32 // µs
	p99      uint32
	p999     uint32
	max      uint32
	firstErr error
}

// summarize merges the callers' latency samples (µs) into a result.
func summarize(samples [][]uint32, elapsed time.Duration) result {
	n := 0
	for _, s := range samples {
		n += len(s)
	}
	all := make([]uint32, 0, n)
	for _, s := range samples {
		all = append(all, s...)
	}
	slices.Sort(all)
	r := result{rpcs: n, elapsed: elapsed}
	if n > 0 {
		r.p50 = quantile(all, 0.50)
		r.p99 = quantile(all, 0.99)
		r.p999 = quantile(all, 0.999)
		r.max = all[n-1]
	}
	return r
}

// quantile is the nearest-rank q-quantile of sorted, which is not empty:
// the smallest sample that at least q of the samples do not exceed.
func quantile(sorted []uint32, q float64) uint32 {
	rank := int(q*float64(len(sorted)) + 0.999999999) // ceil, robust to float error
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

// rps is the successful calls per second.
func (r result) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.rpcs) / r.elapsed.Seconds()
}

// line is the result as one line of key=value fields, for scripts.
func (r result) line(c loadConfig) string {
	kind := "unary"
	if c.stream > 0 {
		kind = fmt.Sprintf("stream%d", c.stream)
	}
	return fmt.Sprintf("grpcbench target=%s kind=%s c=%d conns=%d size=%d elapsed_s=%.3f rpcs=%d errors=%d rps=%.0f p50_us=%d p99_us=%d p999_us=%d max_us=%d",
		strings.Join(c.addrs, ","), kind, c.workers, c.conns, c.size, r.elapsed.Seconds(),
		r.rpcs, r.errors, r.rps(), r.p50, r.p99, r.p999, r.max)
}
