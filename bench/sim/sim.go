// Package sim is a deterministic discrete-event simulation of how well the
// strategies of package strategy spread load: it drives the real pickers
// (Pick, and Done for those that are Observers) with simulated time, so its
// results depend on the seed only, never on the machine.
//
// The model (Run): an open loop of Poisson arrivals at a fixed rate goes
// through one picker to N backends. Each backend is a single FIFO server
// (one request at a time, the rest wait in its queue) with exponential
// service times; one backend is Factor times slower than the others. The
// rate is Load × the backends' total capacity. A request's latency is its
// queueing time plus its service time; a picker that is an Observer is told
// Done(i, Success) when the request completes, so least connections sees
// the in-flight counts a balancer would show it.
//
// Service times use common random numbers: request k has the same
// arrival time and the same Exp(1) draw under every strategy, scaled by
// the mean of the backend it is sent to.
//
// HashBalance measures the consistent-hash ring instead (nginx's ketama
// ring, ngx_http_upstream_update_chash): the load spread of a million keys
// and how many keys move when a backend is added or removed, which
// consistent hashing (Karger et al., STOC 1997) keeps to the share of the
// backend added or removed.
package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"

	"github.com/tinylb/lb/strategy"
)

// Config describes one simulated load.
type Config struct {
	Backends int     // number of backends (10)
	Slow     int     // index of the slow backend (0)
	MeanMS   float64 // mean service time of a normal backend, ms (1)
	Factor   float64 // the slow backend's mean is Factor × MeanMS (10)
	Load     float64 // arrival rate as a fraction of the total capacity (0.7)
	Requests int     // requests measured
	Warmup   int     // requests sent before the measured ones, not counted
	Seed     uint64
}

// Default is the scenario: 10 backends, one 10× slower, 70% load.
func Default() Config {
	return Config{Backends: 10, Slow: 0, MeanMS: 1, Factor: 10, Load: 0.7, Requests: 200_000, Warmup: 20_000, Seed: 1}
}

// Capacity is the total service rate of the backends in requests per
// second.
func (c Config) Capacity() float64 {
	return float64(c.Backends-1)*1000/c.MeanMS + 1000/(c.MeanMS*c.Factor)
}

// Rate is the arrival rate in requests per second.
func (c Config) Rate() float64 { return c.Load * c.Capacity() }

// Policy is a strategy under test with the weights it is given.
type Policy struct {
	Name     string
	Strategy strategy.Strategy
	// Weights of the backends; nil means 1 each.
	Weights []int
	// Keyed: every request carries a fresh random key (for hashing).
	Keyed bool
	// Note says what the policy is, for reports.
	Note string
}

// Policies returns the built-in strategies, with equal weights (what a user
// who does not know the slow backend configures) and, for the weighted
// ones, with weights proportional to capacity. The hash policy reads its
// key from the request's X-Key header, which Run sets to a fresh random
// value for every request.
func Policies(c Config) []Policy {
	capW := make([]int, c.Backends)
	for i := range capW {
		capW[i] = int(math.Round(c.Factor))
	}
	capW[c.Slow] = 1
	return []Policy{
		{Name: "rr", Strategy: strategy.NewRoundRobin(), Note: "round robin"},
		{Name: "swrr", Strategy: strategy.NewSmoothWeighted(), Note: "smooth weighted RR, equal weights"},
		{Name: "swrr-capw", Strategy: strategy.NewSmoothWeighted(), Weights: capW,
			Note: fmt.Sprintf("smooth weighted RR, weights ∝ capacity (slow 1, others %d)", capW[(c.Slow+1)%c.Backends])},
		{Name: "leastconn", Strategy: strategy.NewLeastConn(), Note: "least connections, equal weights"},
		{Name: "leastconn-capw", Strategy: strategy.NewLeastConn(), Weights: capW, Note: "least connections, weights ∝ capacity"},
		{Name: "hash", Strategy: strategy.NewConsistentHash(keyOf), Keyed: true, Note: "consistent hash, a random key per request"},
	}
}

// keyOf is the key function of the hash policies: the key is carried in a
// request header, as lb.HeaderKey would read it.
func keyOf(r *http.Request) string {
	if v := r.Header["X-Key"]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Result is the outcome of one policy under one Config.
type Result struct {
	Policy    string
	Note      string
	Load      float64
	Rate      float64 // arrivals per second
	Requests  int     // measured
	SlowShare float64 // fraction of measured requests sent to the slow backend
	// Latency percentiles of the measured requests, ms.
	P50, P90, P99, P999, Mean, Max float64
	// SlowUtil is the slow backend's offered load: its arrival rate ×
	// its mean service time. Above 1 its queue grows without bound and
	// the latencies grow with the length of the run.
	SlowUtil float64
	// MaxQueue is the longest queue (in flight, including the one in
	// service) any backend had; SlowMaxQueue the slow backend's.
	MaxQueue, SlowMaxQueue int
	// Shares per backend, measured requests.
	Shares []float64
	// SimSeconds is the simulated time of the measured arrivals.
	SimSeconds float64
}

// endpoint is a backend as the strategies see it.
type endpoint struct {
	key string
	w   int
}

func (e *endpoint) Key() string { return e.key }
func (e *endpoint) Weight() int { return e.w }

// job is a request waiting for or in service.
type job struct {
	arrive  float64 // s
	service float64 // s
	counted bool
}

// server is one backend: a FIFO queue whose head is in service.
type server struct {
	mean   float64 // s
	q      []job   // q[0] is in service while len(q) > 0
	head   int
	doneAt float64 // completion time of q[head]; +Inf when idle
}

func (s *server) len() int { return len(s.q) - s.head }

// Run simulates p under c and returns its result. It is deterministic.
func Run(c Config, p Policy) Result {
	m := newModel(c, p)
	m.simulate()
	return m.result()
}

// model is one run: the backends, the picker over them, the random streams
// and what is measured.
type model struct {
	c        Config
	p        Policy
	srv      []server
	picker   strategy.Picker
	obs      strategy.Observer // nil if the picker is not one
	arrivals *rand.Rand        // inter-arrival and service draws
	keys     *rand.Rand        // request keys, for keyed policies
	req      *http.Request     // the request every Pick is given
	keyVal   [1]string         // req's X-Key value, when keyed
	rate     float64
	lat      []float64 // latencies of the measured requests, ms
	counts   []int     // measured requests per backend
	maxQ     []int     // longest queue per backend

	firstT, lastT float64 // arrival times of the first and last measured requests
}

// newModel builds the backends and the picker of c and p: backend i is
// http://10.0.0.(i+1):80, c.Slow is Factor times slower.
func newModel(c Config, p Policy) *model {
	n := c.Backends
	all := make([]strategy.Endpoint, n)
	set := &strategy.Set{All: all, Usable: make([]int, n), Weights: make([]int, n), Scale: 1}
	srv := make([]server, n)
	for i := range all {
		w := 1
		if p.Weights != nil {
			w = p.Weights[i]
		}
		all[i] = &endpoint{key: fmt.Sprintf("http://10.0.0.%d:80", i+1), w: w}
		set.Usable[i] = i
		set.Weights[i] = w
		srv[i] = server{mean: c.MeanMS / 1000, doneAt: math.Inf(1)}
	}
	srv[c.Slow].mean *= c.Factor
	m := &model{c: c, p: p, srv: srv, picker: p.Strategy.Picker(set)}
	m.obs, _ = m.picker.(strategy.Observer)

	m.arrivals = rand.New(rand.NewPCG(c.Seed, 0x5eed))
	m.keys = rand.New(rand.NewPCG(c.Seed, 0x6b657973))
	m.req = &http.Request{Header: http.Header{}}
	if p.Keyed {
		m.req.Header["X-Key"] = m.keyVal[:]
	}
	m.rate = c.Rate()
	m.lat = make([]float64, 0, c.Requests)
	m.counts = make([]int, n)
	m.maxQ = make([]int, n)
	return m
}

// simulate runs the events in time order until every request has been
// sent and served: each step is the earliest completion or the next
// arrival, an arrival first on a tie.
func (m *model) simulate() {
	total := m.c.Warmup + m.c.Requests
	next := m.arrivals.ExpFloat64() / m.rate
	sent := 0
	for {
		// The next event: the earliest completion, or the next arrival.
		bi, bt := -1, math.Inf(1)
		for i := range m.srv {
			if m.srv[i].doneAt < bt {
				bi, bt = i, m.srv[i].doneAt
			}
		}
		if sent < total && next <= bt {
			now := next
			service := m.arrivals.ExpFloat64()
			next = now + m.arrivals.ExpFloat64()/m.rate
			m.arrive(now, service, sent)
			sent++
			continue
		}
		if bi < 0 {
			break // every request sent and served
		}
		m.complete(bi, bt)
	}
}

// arrive sends request number sent, arriving at now with the Exp(1) draw
// service, to the backend the picker picks, and queues it there.
func (m *model) arrive(now, service float64, sent int) {
	if m.p.Keyed {
		m.keyVal[0] = strconv.FormatUint(m.keys.Uint64(), 36)
	}
	i := m.picker.Pick(m.req, nil)
	if i < 0 {
		panic(fmt.Sprintf("sim: %s picked nothing", m.p.Name))
	}
	counted := sent >= m.c.Warmup
	if counted {
		if sent == m.c.Warmup {
			m.firstT = now
		}
		m.lastT = now
		m.counts[i]++
	}
	s := &m.srv[i]
	s.q = append(s.q, job{arrive: now, service: service * s.mean, counted: counted})
	if s.len() == 1 {
		s.doneAt = now + s.q[s.head].service
	}
	m.maxQ[i] = max(m.maxQ[i], s.len())
}

// complete ends the service of the request at the head of backend bi's
// queue at now, tells the picker if it observes, and starts the next.
func (m *model) complete(bi int, now float64) {
	s := &m.srv[bi]
	j := s.q[s.head]
	s.head++
	if s.head > 1024 && s.head*2 > len(s.q) {
		s.q = append(s.q[:0], s.q[s.head:]...)
		s.head = 0
	}
	if j.counted {
		m.lat = append(m.lat, (now-j.arrive)*1000)
	}
	if m.obs != nil {
		m.obs.Done(bi, strategy.Success)
	}
	if s.len() > 0 {
		s.doneAt = now + s.q[s.head].service
	} else {
		s.doneAt = math.Inf(1)
	}
}

// result sums up the measured requests.
func (m *model) result() Result {
	c, lat := m.c, m.lat
	r := Result{Policy: m.p.Name, Note: m.p.Note, Load: c.Load, Rate: m.rate, Requests: len(lat), SimSeconds: m.lastT - m.firstT}
	r.Shares = make([]float64, c.Backends)
	for i, k := range m.counts {
		r.Shares[i] = float64(k) / float64(c.Requests)
	}
	r.SlowShare = r.Shares[c.Slow]
	r.SlowUtil = r.SlowShare * m.rate * m.srv[c.Slow].mean
	r.SlowMaxQueue = m.maxQ[c.Slow]
	r.MaxQueue = slices.Max(m.maxQ)
	slices.Sort(lat)
	var sum float64
	for _, v := range lat {
		sum += v
	}
	r.Mean = sum / float64(len(lat))
	r.P50, r.P90, r.P99, r.P999 = quantile(lat, 0.5), quantile(lat, 0.9), quantile(lat, 0.99), quantile(lat, 0.999)
	r.Max = lat[len(lat)-1]
	return r
}

// quantile returns the q-quantile of sorted xs (nearest rank).
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	k := int(math.Ceil(q*float64(len(xs)))) - 1
	return xs[min(max(k, 0), len(xs)-1)]
}

// HashResult is the ring balance and remapping of the consistent hash over
// one name set.
type HashResult struct {
	Backends int
	Set      int     // name set T: backends are http://10.T.0.1:80 ...
	Keys     int     // keys hashed
	MaxAvg   float64 // most keys on one backend ÷ the mean
	MinAvg   float64 // fewest keys on one backend ÷ the mean
	// AddMoved is the fraction of keys that change backend when backend
	// n+1 joins (ideal 1/(n+1)); AddStray counts those that moved to
	// another backend than the new one (ideal 0).
	AddMoved float64
	AddStray int
	// RemoveMoved is the fraction that change backend when backend n
	// leaves the Set (ideal 1/n); RemoveStray counts keys that moved
	// although they were not on it (ideal 0).
	RemoveMoved float64
	RemoveStray int
	// DownDiffers counts keys whose backend differs between backend n
	// being marked down (left out of Set.Usable, the ring kept) and being
	// removed from the Set (ideal 0: both hand its keys to the next
	// member on the ring).
	DownDiffers int
}

// HashKeys returns the keys HashBalance places: key-0 … key-(n-1).
func HashKeys(n int) []string {
	ks := make([]string, n)
	for i := range ks {
		ks[i] = "key-" + strconv.Itoa(i)
	}
	return ks
}

// hashSet returns the Set of backends http://10.T.0.1:80 … 10.T.0.n:80,
// all usable unless down ≥ 0 names one to leave out of Usable.
func hashSet(t, n, down int) *strategy.Set {
	s := &strategy.Set{Scale: 1}
	for i := range n {
		s.All = append(s.All, &endpoint{key: fmt.Sprintf("http://10.%d.0.%d:80", t, i+1), w: 1})
		s.Weights = append(s.Weights, 1)
		if i != down {
			s.Usable = append(s.Usable, i)
		}
	}
	return s
}

// assign returns the backend key each key maps to under set, using the real
// picker of strategy.NewConsistentHash.
func assign(set *strategy.Set, keys []string) []string {
	p := strategy.NewConsistentHash(keyOf).Picker(set)
	req := &http.Request{Header: http.Header{}}
	var kv [1]string
	req.Header["X-Key"] = kv[:]
	out := make([]string, len(keys))
	for j, k := range keys {
		kv[0] = k
		i := p.Pick(req, nil)
		if i < 0 {
			panic("sim: consistent hash picked nothing")
		}
		out[j] = set.All[i].Key()
	}
	return out
}

// HashBalance measures name set t with n backends over keys.
func HashBalance(t, n int, keys []string) HashResult {
	r := HashResult{Backends: n, Set: t, Keys: len(keys)}
	base := assign(hashSet(t, n, -1), keys)
	count := map[string]int{}
	for _, b := range base {
		count[b]++
	}
	lo, hi := len(keys), 0
	for _, e := range hashSet(t, n, -1).All {
		c := count[e.Key()]
		lo, hi = min(lo, c), max(hi, c)
	}
	avg := float64(len(keys)) / float64(n)
	r.MaxAvg, r.MinAvg = float64(hi)/avg, float64(lo)/avg

	added := assign(hashSet(t, n+1, -1), keys)
	newKey := fmt.Sprintf("http://10.%d.0.%d:80", t, n+1)
	moved := 0
	for j := range keys {
		if added[j] != base[j] {
			moved++
			if added[j] != newKey {
				r.AddStray++
			}
		}
	}
	r.AddMoved = float64(moved) / float64(len(keys))

	removed := assign(hashSet(t, n-1, -1), keys)
	gone := fmt.Sprintf("http://10.%d.0.%d:80", t, n)
	moved = 0
	for j := range keys {
		if removed[j] != base[j] {
			moved++
			if base[j] != gone {
				r.RemoveStray++
			}
		}
	}
	r.RemoveMoved = float64(moved) / float64(len(keys))

	down := assign(hashSet(t, n, n-1), keys)
	for j := range keys {
		if down[j] != removed[j] {
			r.DownDiffers++
		}
	}
	return r
}
