//go:build unix

package bench

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user + system) the process has used, every
// thread included: the goroutines of the benchmark, the garbage
// collector's workers, the runtime. Unlike wall time it does not grow when
// other processes take the CPU away, so it stays readable on a shared
// machine; it is what the wrk harness's CPU µs/request measures.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
