// Package loadweight computes backend weights from load: gRPC's
// weighted_round_robin (gRFC A58; grpc-go balancer/weightedroundrobin) and
// Envoy's client_side_weighted_round_robin (orca_weight_manager.cc), over
// reports a backend sends (the ORCA endpoint-load-metrics forms, see
// [Parse]) or, in Measured mode, over what the balancer sees of its
// requests (see [Window.Observe]).
//
// It is pure computation on a clock it is given: package lb feeds it from
// response headers and polls and turns its factors into the weights of a
// strategy.Set; the simulator (bench/sim) feeds it simulated time.
//
//	g, _ := loadweight.New(loadweight.Config{})
//	g.Report(0, loadweight.Load{QPS: 100, CPU: 0.2}, now)
//	g.Report(1, loadweight.Load{QPS: 100, CPU: 0.8}, now)
//	w := g.Weights(now.Add(11*time.Second), []int{1, 1}) // [160 40]: 4 to 1, in units of 1/Scale
package loadweight

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Defaults, gRFC A58's (and Envoy's).
const (
	DefaultBlackout     = 10 * time.Second
	DefaultExpiration   = 3 * time.Minute
	DefaultUpdatePeriod = time.Second
	MinUpdatePeriod     = 100 * time.Millisecond // A58: shorter periods are raised to it
	DefaultPenalty      = 1.0
	DefaultWindow       = 10 * time.Second
	DefaultMaxFactor    = 10.0
	// MinFactor is the smallest factor of a configured weight: §12.2 of
	// HAProxy's agent-check mapping keeps a reported weight at 1% or more,
	// so that a backend reporting itself swamped still gets the odd
	// request and can report that it recovered.
	MinFactor = 0.01
)

// ErrInvalidConfig is wrapped by [Config.Validate]'s errors.
var ErrInvalidConfig = errors.New("loadweight: invalid config")

// Config holds the parameters. The zero value of each field means the
// default named beside it; negative durations and negative or NaN numbers
// are invalid. A58's zero values (no blackout, no error penalty) are spelled
// as the smallest positive value: a Blackout of time.Nanosecond, a Penalty
// of 1e-9.
type Config struct {
	// Blackout is how long a backend must report without a break before its
	// weight is used (A58 blackout_period): 10 s.
	Blackout time.Duration
	// Expiration is how long a weight lasts without a new report (A58
	// weight_expiration_period): 3 min. After it the backend has no weight
	// and its next reports start a new blackout.
	Expiration time.Duration
	// UpdatePeriod is how often the weights are recomputed (A58
	// weight_update_period): 1 s, and never less than 100 ms.
	UpdatePeriod time.Duration
	// Penalty is error_utilization_penalty: 1.0.
	Penalty float64
	// Measured derives the load of each backend from its requests instead
	// of its reports (see [Window.Observe]).
	Measured bool
	// Window is the time constant of Measured mode's moving average: 10 s.
	Window time.Duration
	// MaxFactor bounds the factor a weight gives a backend's configured
	// weight from above: 10. From below it is [MinFactor].
	MaxFactor float64
}

// WithDefaults returns c with its zero fields set to their defaults and
// UpdatePeriod raised to MinUpdatePeriod. It does not validate c.
func (c Config) WithDefaults() Config {
	if c.Blackout == 0 {
		c.Blackout = DefaultBlackout
	}
	if c.Expiration == 0 {
		c.Expiration = DefaultExpiration
	}
	if c.UpdatePeriod == 0 {
		c.UpdatePeriod = DefaultUpdatePeriod
	}
	c.UpdatePeriod = max(c.UpdatePeriod, MinUpdatePeriod)
	if c.Penalty == 0 {
		c.Penalty = DefaultPenalty
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.MaxFactor == 0 {
		c.MaxFactor = DefaultMaxFactor
	}
	return c
}

// Validate reports the first impossible field of c, naming it; the error
// wraps [ErrInvalidConfig].
func (c Config) Validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"Blackout", c.Blackout}, {"Expiration", c.Expiration}, {"UpdatePeriod", c.UpdatePeriod}, {"Window", c.Window}} {
		if d.v < 0 {
			return fmt.Errorf("%w: %s %v: must not be negative", ErrInvalidConfig, d.name, d.v)
		}
	}
	if !(c.Penalty >= 0) || math.IsInf(c.Penalty, 0) {
		return fmt.Errorf("%w: Penalty %v: must be a finite number, 0 or more", ErrInvalidConfig, c.Penalty)
	}
	if c.MaxFactor != 0 && (!(c.MaxFactor >= 1) || math.IsInf(c.MaxFactor, 0)) {
		return fmt.Errorf("%w: MaxFactor %v: must be a finite number, 1 or more", ErrInvalidConfig, c.MaxFactor)
	}
	return nil
}
