package main

import (
	"strconv"

	"github.com/tinylb/lb"
)

// retryConfig is the lb.RetryPolicy.
type retryConfig struct {
	Tries         int      `json:"tries"`   // attempts, the first included; 1: no retries
	Timeout       duration `json:"timeout"` // 0: no bound
	Statuses      []int    `json:"statuses"`
	NonIdempotent bool     `json:"non_idempotent"`
	BodyBuffer    int64    `json:"body_buffer"` // bytes; 0 keeps nothing
}

func (r *retryConfig) validate(p string) error {
	switch {
	case r.Tries < 1:
		return badf(p+".tries", strconv.Itoa(r.Tries), "must be at least 1 (1 turns retries off)")
	case r.Timeout < 0:
		return badf(p+".timeout", quoteD(r.Timeout), "must not be negative (0 is no bound)")
	case r.BodyBuffer < 0:
		return badf(p+".body_buffer", strconv.FormatInt(r.BodyBuffer, 10), "must not be negative (0 keeps nothing)")
	}
	for i, s := range r.Statuses {
		if s < 400 || s > 599 {
			return badf(index(p+".statuses", i), strconv.Itoa(s), "must be a 4xx or 5xx status")
		}
	}
	if err := r.policy().Validate(); err != nil {
		return badf(p, "", "%v", err)
	}
	return nil
}

func (r *retryConfig) policy() lb.RetryPolicy {
	p := lb.RetryPolicy{
		Tries:         r.Tries,
		Timeout:       r.Timeout.D(),
		Statuses:      r.Statuses,
		NonIdempotent: r.NonIdempotent,
		BodyBuffer:    r.BodyBuffer,
	}
	if p.BodyBuffer == 0 {
		p.BodyBuffer = -1 // the library's 0 is its default, 1 MiB
	}
	return p
}
