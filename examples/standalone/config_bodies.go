package main

import (
	"strconv"

	"github.com/tinylb/lb"
)

// bufferingConfig is the lb.RequestBuffering: each field is the field of
// the same name, and its zero value (or leaving it out) means what it
// means there, the library's default.
type bufferingConfig struct {
	Max     int64    `json:"max"`     // bytes; 0: 1 MiB; -1: off
	Timeout duration `json:"timeout"` // 0: 30s; negative: no bound of the balancer's own
}

// validate checks the request buffering settings; p is their path.
func (b *bufferingConfig) validate(p string) error {
	if b.Max < -1 {
		return badf(p+".max", strconv.FormatInt(b.Max, 10), "must be -1 (off), 0 (the default, 1 MiB) or more")
	}
	return nil
}

// validateBodies checks the settings about request bodies held in memory:
// request buffering and the balancer-wide bound on body bytes.
func (c *config) validateBodies() error {
	if err := c.RequestBuffering.validate("request_buffering"); err != nil {
		return err
	}
	if c.BodyMemory < -1 {
		return badf("body_memory", strconv.FormatInt(c.BodyMemory, 10), "must be -1 (no bound), 0 (the default, 64 MiB or GOMEMLIMIT/8) or more")
	}
	return nil
}

// bodyOptions returns the balancer options for request bodies. They are
// always given, so that 0 is the library's default.
func (c *config) bodyOptions() []lb.Option {
	return []lb.Option{
		lb.WithRequestBuffering(lb.RequestBuffering{Max: c.RequestBuffering.Max, Timeout: c.RequestBuffering.Timeout.D()}),
		lb.WithBodyMemory(c.BodyMemory),
	}
}
