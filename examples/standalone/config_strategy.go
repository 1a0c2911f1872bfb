package main

import (
	"strconv"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/strategy"
)

// defaultBalanceFactor is boundedhash's c when balance_factor is 0:
// every backend is held to 125% of the average load, HAProxy's
// "hash-balance-factor 125" and the value lb.BoundedHash suggests.
const defaultBalanceFactor = 1.25

// strategyNames lists the strategy settings, for the error messages.
const strategyNames = "rr, swrr, leastconn, leastrequest, peakewma, hash or boundedhash"

// keyed reports whether the strategy hashes a key (hash_key).
func keyed(s string) bool { return s == "hash" || s == "boundedhash" }

// balanceFactor is the c of boundedhash: balance_factor, or its default.
func (c *config) balanceFactor() float64 {
	if c.BalanceFactor == 0 {
		return defaultBalanceFactor
	}
	return c.BalanceFactor
}

// validateStrategy checks the strategy, its hash key and its balance
// factor.
func (c *config) validateStrategy() error {
	switch c.Strategy {
	case "rr", "swrr", "leastconn", "leastrequest", "peakewma", "hash", "boundedhash":
	default:
		return badf("strategy", quote(c.Strategy), "unknown strategy: want %s", strategyNames)
	}
	switch {
	case !keyed(c.Strategy) && c.HashKey != "":
		return badf("hash_key", quote(c.HashKey), "only used with strategy hash or boundedhash, not %s", c.Strategy)
	case keyed(c.Strategy) && c.HashKey == "":
		return badf("hash_key", "", "strategy %s needs a hash key: header:NAME, cookie:NAME, query:NAME, ip or path", c.Strategy)
	case c.Strategy != "boundedhash" && c.BalanceFactor != 0:
		return badf("balance_factor", strconv.FormatFloat(c.BalanceFactor, 'g', -1, 64),
			"only used with strategy boundedhash, not %s", c.Strategy)
	}
	if keyed(c.Strategy) {
		if _, err := parseHashKey(c.HashKey); err != nil {
			return badf("hash_key", quote(c.HashKey), "%v", err)
		}
	}
	if c.Strategy == "boundedhash" {
		// The library has the last word on c: finite and at least 1.
		if err := strategy.NewBoundedHash(nil, c.balanceFactor()).Validate(); err != nil {
			return &fieldError{path: "balance_factor", value: strconv.FormatFloat(c.BalanceFactor, 'g', -1, 64),
				msg: "must be a finite number of at least 1, such as 1.25 (0: 1.25)", err: err}
		}
	}
	return nil
}

// newStrategy returns the configured strategy. c must have passed validate.
func (c *config) newStrategy() lb.Strategy {
	switch c.Strategy {
	case "swrr":
		return lb.SmoothWeighted()
	case "leastconn":
		return lb.LeastConn()
	case "leastrequest":
		return lb.LeastRequest()
	case "peakewma":
		return lb.PeakEWMA()
	case "hash":
		key, _ := parseHashKey(c.HashKey)
		return lb.ConsistentHash(key)
	case "boundedhash":
		key, _ := parseHashKey(c.HashKey)
		return lb.BoundedHash(key, c.balanceFactor())
	}
	return lb.RoundRobin()
}
