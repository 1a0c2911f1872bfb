package loadweight

import (
	"math"
	"sync"
	"time"
)

// Scale is the number of weight units per configured weight unit in the
// weights [Group.Weights] returns: factors are kept to 1%.
const Scale = 100

// Group is the weighing of one set of backends: a [Config] and a
// [Window] per backend. Package lb keeps Windows on its own records of
// backends (NewWindow, Factors); a caller that numbers its backends (the
// simulator) can use Report, Observe and Weights by index instead. A Group
// is safe for concurrent use.
type Group struct {
	cfg Config

	mu sync.Mutex // guards ws
	ws []*Window  // by index, for Report, Observe and Weights
}

// New returns a Group with cfg, its zero fields set to their defaults. It
// fails if cfg is invalid ([Config.Validate]).
func New(cfg Config) (*Group, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Group{cfg: cfg.WithDefaults()}, nil
}

// Config returns the group's config, with its defaults filled in.
func (g *Group) Config() Config { return g.cfg }

// NewWindow returns a Window that weighs one backend with the group's
// config.
func (g *Group) NewWindow() *Window { return &Window{cfg: &g.cfg} }

// window returns the Window of backend i, making the missing ones.
func (g *Group) window(i int) *Window {
	g.mu.Lock()
	defer g.mu.Unlock()
	for len(g.ws) <= i {
		g.ws = append(g.ws, g.NewWindow())
	}
	return g.ws[i]
}

// Report records backend i's report at now ([Window.Report]).
func (g *Group) Report(i int, l Load, now time.Time) bool {
	if i < 0 {
		return false
	}
	return g.window(i).Report(l, now)
}

// Observe records an attempt on backend i that ended at now
// ([Window.Observe]).
func (g *Group) Observe(i int, latency time.Duration, failed bool, now time.Time) {
	if i >= 0 {
		g.window(i).Observe(latency, failed, now)
	}
}

// Reset restarts backend i's blackout ([Window.Reset]).
func (g *Group) Reset(i int) {
	if i >= 0 {
		g.window(i).Reset()
	}
}

// Window returns backend i's Window, to read its [Window.State].
func (g *Group) Window(i int) *Window { return g.window(max(i, 0)) }

// Weights returns the weights of backends 0 to len(configured)-1 at now, in
// units of 1/[Scale] of a configured weight unit: configured[i] × factor ×
// Scale, rounded, at least 1, where the factors are [Group.Factors']. Set
// them as a strategy.Set's Weights with Scale as its Scale.
func (g *Group) Weights(now time.Time, configured []int) []int {
	ws := make([]*Window, len(configured))
	for i := range ws {
		ws[i] = g.window(i)
	}
	f := g.Factors(now, ws, configured, nil)
	out := make([]int, len(configured))
	for i, c := range configured {
		out[i] = Units(c, f[i])
	}
	return out
}

// Units is configured × factor in units of 1/Scale, rounded, at least 1.
func Units(configured int, factor float64) int {
	return max(int(math.Round(float64(configured)*factor*Scale)), 1)
}

// Factors returns, for each window, the factor by which its backend's
// configured weight is multiplied at now, in out if it has room. A
// backend's capacity per configured weight unit is its weight over its
// configured weight; its factor is that over the mean of the backends with
// a weight (each counted by its configured weight, so that their total
// configured weight is kept):
//
//	factor[i] = (w[i]/c[i]) / (Σ w / Σ c)   over the backends with a weight
//
// clamped to [MinFactor, MaxFactor]. Backends without a weight get 1: the
// mean, as gRPC gives them the mean weight (Envoy: the median). With fewer
// than two weights every factor is 1 and the configured weights stand, as
// gRPC falls back to round robin. With equal configured weights the result
// is gRPC's: shares in proportion to the weights. A nil window, or a
// configured weight below 1, counts as a backend without a weight.
func (g *Group) Factors(now time.Time, ws []*Window, configured []int, out []float64) []float64 {
	out = out[:0]
	var sumW, sumC float64
	valid := 0
	for i, w := range ws {
		wt := 0.0
		if w != nil && i < len(configured) && configured[i] >= 1 {
			wt = w.Weight(now)
		}
		out = append(out, wt)
		if wt > 0 {
			valid++
			sumW += wt
			sumC += float64(configured[i])
		}
	}
	if valid < 2 {
		for i := range out {
			out[i] = 1
		}
		return out
	}
	mean := sumW / sumC
	for i, wt := range out {
		if wt == 0 {
			out[i] = 1
			continue
		}
		f := wt / float64(configured[i]) / mean
		if math.IsNaN(f) {
			f = 1
		}
		out[i] = min(max(f, MinFactor), g.cfg.MaxFactor)
	}
	return out
}
