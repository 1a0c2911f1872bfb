package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/tinylb/lb"
)

// retryConfig is the lb.RetryPolicy: each field is the RetryPolicy field
// of the same name, and its zero value (or leaving it out) means what it
// means there, the library's default.
type retryConfig struct {
	Tries         int      `json:"tries"`   // attempts, the first included; 0: 3; 1: no retries
	Timeout       duration `json:"timeout"` // 0: no bound
	Statuses      []int    `json:"statuses"`
	NonIdempotent bool     `json:"non_idempotent"`
	BodyBuffer    int64    `json:"body_buffer"` // bytes; 0: 1 MiB; -1: keep nothing
	Budget        float64  `json:"budget"`      // 0: no budget
	MinRetries    int      `json:"min_retries"` // 0: 3
}

// validate checks the retry policy's settings; p is their path.
func (r *retryConfig) validate(p string) error {
	switch {
	case r.Tries < 0:
		return badf(p+".tries", strconv.Itoa(r.Tries), "must not be negative (0 is the default, 3; 1 turns retries off)")
	case r.Timeout < 0:
		return badf(p+".timeout", quoteD(r.Timeout), "must not be negative (0 is no bound)")
	case r.BodyBuffer < -1:
		return badf(p+".body_buffer", strconv.FormatInt(r.BodyBuffer, 10), "must be -1 (keep nothing), 0 (the default, 1 MiB) or more")
	case !(r.Budget >= 0 && r.Budget <= 1): // NaN too
		return badf(p+".budget", strconv.FormatFloat(r.Budget, 'g', -1, 64), "must be between 0 (no budget) and 1")
	case r.MinRetries < 0:
		return badf(p+".min_retries", strconv.Itoa(r.MinRetries), "must not be negative (0 is the default, 3)")
	}
	// Each status as the library judges it, so that the error names it.
	for i, s := range r.Statuses {
		if err := (lb.RetryPolicy{Statuses: []int{s}}).Validate(); err != nil {
			return badf(index(p+".statuses", i), "", "%s", strings.TrimPrefix(err.Error(), "lb: RetryPolicy.Statuses: "))
		}
	}
	if err := r.policy().Validate(); err != nil {
		return badf(p, "", "%v", err)
	}
	return nil
}

// policy returns the lb.RetryPolicy of r.
func (r *retryConfig) policy() lb.RetryPolicy {
	return lb.RetryPolicy{
		Tries:         r.Tries,
		Timeout:       r.Timeout.D(),
		Statuses:      r.Statuses,
		NonIdempotent: r.NonIdempotent,
		BodyBuffer:    r.BodyBuffer,
		Budget:        r.Budget,
		MinRetries:    r.MinRetries,
	}
}

// triesHint is what the error for the -retries flag, which counted
// retries, suggests: the -tries of the same meaning.
func triesHint(retries string) string {
	if n, err := strconv.Atoi(retries); err == nil && n >= 0 {
		return fmt.Sprintf("-retries %d is -tries %d", n, n+1)
	}
	return "-tries 1 turns retries off"
}
