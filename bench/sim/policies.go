package sim

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/tinylb/lb/strategy"
)

// Env is what a policy's constructors get for one balancer instance: the
// simulated clock, a random source of its own (seeded from the run's seed
// and the instance, so every strategy sees the same streams) and the
// number of backends.
type Env struct {
	Now      func() time.Time
	Rand     *rand.Rand
	Instance int
	Backends int
}

// Policy is a strategy under test with the weights it is given.
type Policy struct {
	Name string
	// Note says what the policy is, for reports.
	Note string
	// New builds the strategy of one balancer instance; a run with several
	// instances calls it once for each.
	New func(Env) strategy.Strategy
	// Weights of the backends; nil means 1 each.
	Weights []int
	// Keyed: every request carries a key in its X-Key header (a fresh
	// random one, or a Zipf-distributed one in the hot-key workload).
	Keyed bool
	// Factor is the capacity factor c of a bounded-load hash policy, for
	// reports; 0 for the others.
	Factor float64 `json:",omitempty"`
	// Weigher, if set, gives each instance dynamic weights: every update
	// period the backends' load reports go to it and the weights it
	// returns become the instance's Set.Weights.
	Weigher func(Env) Weigher
}

// LoadReport is what a backend reports over one update period, as an ORCA
// report carries it (gRFC A58): requests completed per second, the busy
// fraction of its workers, errors per second.
type LoadReport struct {
	QPS, Utilization, EPS float64
}

// Weigher turns what one balancer instance learns into weights.
type Weigher interface {
	// Observe is told every request the instance sent, when it completes.
	Observe(now time.Time, i int, rtt time.Duration, failed bool)
	// Report is backend i's report over the period that ends at now.
	Report(now time.Time, i int, r LoadReport)
	// Weights fills w with the weights to use from now on, one per
	// backend, in units of 1/scale of a configured weight, and reports
	// whether it did; false keeps the current ones.
	Weights(now time.Time, w []int) (scale int, ok bool)
}

// lineup lists the strategies that every workload without keys runs, in
// report order. Adding a strategy to the comparison is one line here.
var lineup = []Policy{
	{Name: "rr", Note: "round robin", New: func(Env) strategy.Strategy { return strategy.NewRoundRobin() }},
	{Name: "swrr", Note: "smooth weighted RR, equal weights", New: func(Env) strategy.Strategy { return strategy.NewSmoothWeighted() }},
	{Name: "leastconn", Note: "least connections, equal weights", New: func(Env) strategy.Strategy { return strategy.NewLeastConn() }},
	{Name: "leastrequest", Note: "least request (Envoy), two random choices", New: leastRequest(2)},
	{Name: "peakewma", Note: "peak EWMA (Finagle), two random choices, τ 10 s", New: peakEWMA},
}

// hashLineup lists the key-hashing strategies of the hot-key workload; the
// bounded ones are added per capacity factor by HotKeyPolicies.
var hashLineup = []Policy{
	{Name: "hash", Note: "consistent hash", Keyed: true, New: func(Env) strategy.Strategy { return strategy.NewConsistentHash(keyOf) }},
}

// boundedPolicies returns the bounded-load hash policies at capacity
// factor c (HAProxy's hash-balance-factor c×100).
func boundedPolicies(c float64) []Policy {
	return []Policy{{Name: fmt.Sprintf("bounded-%g", c), Note: fmt.Sprintf("bounded-load consistent hash, c = %g (hash-balance-factor %.0f)", c, c*100),
		Keyed: true, Factor: c, New: func(Env) strategy.Strategy { return strategy.NewBoundedHash(keyOf, c) }}}
}

// Lineup returns the load-balancing policies every keyless workload runs.
func Lineup() []Policy { return append([]Policy(nil), lineup...) }

// keyOf is the key function of the hash policies: the key is carried in a
// request header, as lb.HeaderKey would read it.
func keyOf(r *http.Request) string {
	if v := r.Header["X-Key"]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// endpoint is a backend as the strategies see it.
type endpoint struct {
	key string
	w   int
}

func (e *endpoint) Key() string { return e.key }
func (e *endpoint) Weight() int { return e.w }

// zipfKeys is the key population of the hot-key workload: names[k] is key
// k's string, drawn with Zipf exponent s.
type zipfKeys struct {
	s     float64
	names []string
}

func newZipfKeys(s float64, n int) *zipfKeys {
	z := &zipfKeys{s: s, names: make([]string, n)}
	for i := range z.names {
		z.names[i] = "key-" + strconv.Itoa(i)
	}
	return z
}
