package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/tinylb/lb/strategy"
)

// Epoch is simulated time zero, as the strategies' clocks see it: the
// clock an Env hands out reads Epoch plus the simulated seconds elapsed.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// backendSpec is one simulated server: workers requests in service at once,
// the rest waiting in one FIFO queue, exponential service times.
type backendSpec struct {
	mean    float64 // mean service time, s
	workers int     // at least 1
	slowAt  float64 // from this arrival time on (s) the mean is × slowBy; +Inf: never
	slowBy  float64
}

// meanAt is the mean service time of a request arriving at t.
func (b backendSpec) meanAt(t float64) float64 {
	if t >= b.slowAt {
		return b.mean * b.slowBy
	}
	return b.mean
}

// workload is everything a run needs besides the policy.
type workload struct {
	backends []backendSpec
	// rate is the arrival rate of epochs per second; each epoch sends one
	// request through each of instances balancers at the same instant.
	rate      float64
	instances int
	requests  int // measured requests (over all instances)
	warmup    int // requests before them, not measured
	seed      uint64
	zipf      *zipfKeys // keyed policies: Zipf keys; nil: a fresh random key per request
	period    float64   // update period of a Policy's Weigher, s
	record    bool      // keep the backend of every measured request
}

// job is a request waiting for or in service.
type job struct {
	arrive  float64 // s
	service float64 // s
	counted bool
	inst    int32
	picker  strategy.Picker // the picker that chose it, told Done
}

// server is one backend.
type server struct {
	spec    backendSpec
	wait    []job // FIFO; wait[head:] are waiting
	head    int
	busy    []job     // in service, at most spec.workers
	ends    []float64 // ends[k] is when busy[k] completes
	doneAt  float64   // min(ends); +Inf when idle
	maxQ    int       // most requests in flight at once
	lastT   float64   // time busyInt was last brought up to date
	busyInt float64   // worker-seconds busy since the last report
	served  int       // completions since the last report
}

func (s *server) inFlight() int { return len(s.busy) + len(s.wait) - s.head }

// account brings the busy integral up to now.
func (s *server) account(now float64) {
	s.busyInt += float64(len(s.busy)) * (now - s.lastT)
	s.lastT = now
}

func (s *server) start(j job, now float64) {
	s.busy = append(s.busy, j)
	s.ends = append(s.ends, now+j.service)
	s.doneAt = min(s.doneAt, now+j.service)
}

// instance is one balancer: its own strategy, Set and picker.
type instance struct {
	strat   strategy.Strategy
	set     *strategy.Set
	picker  strategy.Picker
	weigher Weigher
	req     *http.Request
	keyVal  [1]string
}

// engine is one run of one policy over one workload.
type engine struct {
	w        workload
	p        Policy
	srv      []server
	inst     []*instance
	arrivals *rand.Rand // inter-arrival and service draws
	keys     *rand.Rand // request keys
	zipf     *rand.Zipf
	now      float64

	lat      []sample // measured requests, in completion order
	counts   []int    // measured requests per backend
	picks    []int32  // backend of each measured request, in arrival order, if recorded
	keyIdx   []int32  // and its Zipf key
	imbSum   float64  // Σ over measured epochs of max in-flight ÷ mean in-flight
	imbN     int
	firstT   float64 // arrival of the first measured request
	lastT    float64 // and of the last
	nextUpd  float64 // next Weigher update, s
	lastUpd  float64
	reported []LoadReport
}

// sample is one measured request.
type sample struct {
	ms      float64 // latency
	arrive  float64 // s
	backend int32
}

// run simulates p over w.
func run(w workload, p Policy) *engine {
	e := newEngine(w, p)
	e.simulate()
	return e
}

func newEngine(w workload, p Policy) *engine {
	n := len(w.backends)
	all := make([]strategy.Endpoint, n)
	e := &engine{w: w, p: p, srv: make([]server, n)}
	for i := range all {
		wt := 1
		if p.Weights != nil {
			wt = p.Weights[i]
		}
		all[i] = &endpoint{key: endpointKey(i), w: wt}
		e.srv[i] = server{spec: w.backends[i], doneAt: math.Inf(1)}
	}
	for k := range max(w.instances, 1) {
		env := Env{Now: e.clock, Rand: rand.New(rand.NewPCG(w.seed, 0x1257a0+uint64(k))), Instance: k, Backends: n}
		in := &instance{strat: p.New(env), req: &http.Request{Header: http.Header{}}}
		if p.Keyed {
			in.req.Header["X-Key"] = in.keyVal[:]
		}
		if p.Weigher != nil {
			in.weigher = p.Weigher(env)
		}
		set := &strategy.Set{All: all, Usable: make([]int, n), Weights: make([]int, n), Scale: 1}
		for i := range all {
			set.Usable[i] = i
			set.Weights[i] = all[i].Weight()
		}
		in.set, in.picker = set, in.strat.Picker(set)
		e.inst = append(e.inst, in)
	}
	e.arrivals = rand.New(rand.NewPCG(w.seed, 0x5eed))
	e.keys = rand.New(rand.NewPCG(w.seed, 0x6b657973))
	if w.zipf != nil {
		e.zipf = rand.NewZipf(e.keys, w.zipf.s, 1, uint64(len(w.zipf.names)-1))
	}
	e.lat = make([]sample, 0, w.requests)
	e.counts = make([]int, n)
	if w.record {
		e.picks = make([]int32, 0, w.requests)
	}
	e.nextUpd, e.reported = math.Inf(1), make([]LoadReport, n)
	if p.Weigher != nil && w.period > 0 {
		e.nextUpd = w.period
	}
	return e
}

// endpointKey names backend i: http://10.0.0.(i+1):80 for the first 250,
// then 10.0.1.x and on.
func endpointKey(i int) string { return fmt.Sprintf("http://10.0.%d.%d:80", i/250, i%250+1) }

// clock is the simulated clock the strategies read.
func (e *engine) clock() time.Time { return Epoch.Add(time.Duration(e.now * 1e9)) }

// simulate runs the events in time order until every request has been
// sent and served: each step is the earliest of a completion, the next
// arrival epoch and the next weight update; on a tie an update comes
// first, then an arrival.
func (e *engine) simulate() {
	total := e.w.warmup + e.w.requests
	per := max(e.w.instances, 1)
	next := e.arrivals.ExpFloat64() / e.w.rate
	sent := 0
	for {
		bi, bt := -1, math.Inf(1)
		for i := range e.srv {
			if e.srv[i].doneAt < bt {
				bi, bt = i, e.srv[i].doneAt
			}
		}
		if sent < total && e.nextUpd <= min(next, bt) {
			e.now = e.nextUpd
			e.update()
			continue
		}
		if sent < total && next <= bt {
			e.now = next
			for k := 0; k < per && sent < total; k++ {
				service := e.arrivals.ExpFloat64()
				e.arrive(k, service, sent)
				sent++
			}
			if sent > e.w.warmup {
				e.sampleImbalance()
			}
			next = e.now + e.arrivals.ExpFloat64()/e.w.rate
			continue
		}
		if bi < 0 {
			break // every request sent and served
		}
		e.now = bt
		e.complete(bi)
	}
}

// arrive sends request number sent, through instance k at e.now with the
// Exp(1) draw service, to the backend k's picker picks.
func (e *engine) arrive(k int, service float64, sent int) {
	in := e.inst[k]
	ki := int32(-1)
	if e.p.Keyed {
		if e.zipf != nil {
			ki = int32(e.zipf.Uint64())
			in.keyVal[0] = e.w.zipf.names[ki]
		} else {
			in.keyVal[0] = strconv.FormatUint(e.keys.Uint64(), 36)
		}
	}
	i := in.picker.Pick(in.req, nil)
	if i < 0 {
		panic(fmt.Sprintf("sim: %s picked nothing", e.p.Name))
	}
	counted := sent >= e.w.warmup
	if counted {
		if sent == e.w.warmup {
			e.firstT = e.now
		}
		e.lastT = e.now
		e.counts[i]++
		if e.w.record {
			e.picks = append(e.picks, int32(i))
			e.keyIdx = append(e.keyIdx, ki)
		}
	}
	s := &e.srv[i]
	j := job{arrive: e.now, service: service * s.spec.meanAt(e.now), counted: counted, inst: int32(k), picker: in.picker}
	if len(s.busy) < max(s.spec.workers, 1) {
		s.account(e.now)
		s.start(j, e.now)
	} else {
		s.wait = append(s.wait, j)
	}
	s.maxQ = max(s.maxQ, s.inFlight())
}

// complete ends the service at backend bi that ends at e.now, tells the
// picker that chose it, and starts the next waiting request.
func (e *engine) complete(bi int) {
	s := &e.srv[bi]
	s.account(e.now)
	k := 0
	for x := range s.ends {
		if s.ends[x] < s.ends[k] {
			k = x
		}
	}
	j := s.busy[k]
	last := len(s.busy) - 1
	s.busy[k], s.ends[k] = s.busy[last], s.ends[last]
	s.busy, s.ends = s.busy[:last], s.ends[:last]
	s.served++
	rtt := e.now - j.arrive
	if j.counted {
		e.lat = append(e.lat, sample{ms: rtt * 1000, arrive: j.arrive, backend: int32(bi)})
	}
	if lo, ok := j.picker.(strategy.LatencyObserver); ok {
		lo.DoneAfter(bi, strategy.Success, time.Duration(rtt*1e9))
	} else if o, ok := j.picker.(strategy.Observer); ok {
		o.Done(bi, strategy.Success)
	}
	if w := e.inst[j.inst].weigher; w != nil {
		w.Observe(e.clock(), bi, time.Duration(rtt*1e9), false)
	}
	if s.head < len(s.wait) {
		s.start(s.wait[s.head], e.now)
		s.wait[s.head] = job{}
		s.head++
		if s.head > 1024 && s.head*2 > len(s.wait) {
			s.wait = append(s.wait[:0], s.wait[s.head:]...)
			s.head = 0
		}
	}
	s.doneAt = math.Inf(1)
	for _, t := range s.ends {
		s.doneAt = min(s.doneAt, t)
	}
}

// sampleImbalance adds the most requests in flight at one backend ÷ the
// mean over the backends, after an epoch's arrivals.
func (e *engine) sampleImbalance() {
	hi, sum := 0, 0
	for i := range e.srv {
		f := e.srv[i].inFlight()
		hi, sum = max(hi, f), sum+f
	}
	e.imbSum += float64(hi) * float64(len(e.srv)) / float64(sum)
	e.imbN++
}

// update is a Weigher's period: every backend reports its load over the
// period just ended, each instance's Weigher turns the reports into
// weights, and an instance whose weights changed gets a new Set and picker.
func (e *engine) update() {
	dt := e.now - e.lastUpd
	for i := range e.srv {
		s := &e.srv[i]
		s.account(e.now)
		e.reported[i] = LoadReport{QPS: float64(s.served) / dt, Utilization: s.busyInt / (float64(max(s.spec.workers, 1)) * dt)}
		s.served, s.busyInt = 0, 0
	}
	now := e.clock()
	for _, in := range e.inst {
		for i, r := range e.reported {
			in.weigher.Report(now, i, r)
		}
		ws := make([]int, len(e.srv))
		scale, ok := in.weigher.Weights(now, ws)
		if !ok {
			continue
		}
		for i := range ws {
			ws[i] = max(ws[i], 1) // a Set's weights are at least 1
		}
		if scale == in.set.Scale && equalInts(ws, in.set.Weights) {
			continue
		}
		set := *in.set
		set.Weights, set.Scale = ws, max(scale, 1)
		in.set = &set
		in.picker = in.strat.Picker(in.set)
	}
	e.lastUpd = e.now
	e.nextUpd = e.now + e.w.period
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
