package sim

import (
	"math"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/tinylb/lb/strategy"
)

// BinsResult is n balls into n bins through one picker: n picks with
// nothing finishing, the most picks one backend got, over many trials.
// Mitzenmacher ("The Power of Two Choices in Randomized Load Balancing",
// 2001) bounds the maximum at about ln n / ln ln n for one uniform choice
// and ln ln n / ln 2 + O(1) for the better of two.
type BinsResult struct {
	Policy  string
	N       int
	Trials  int
	MeanMax float64 // mean over the trials of the fullest bin
	MaxMax  int     // fullest bin over all trials
	// OneChoice is ln n / ln ln n, TwoChoices ln ln n / ln 2 (without
	// their O(1) terms).
	OneChoice, TwoChoices float64
}

// Bins throws n balls into n bins with p, trials times, each trial with a
// fresh strategy whose Env.Rand is seeded from seed and the trial.
func Bins(n, trials int, seed uint64, p Policy) BinsResult {
	r := BinsResult{Policy: p.Name, N: n, Trials: trials,
		OneChoice: math.Log(float64(n)) / math.Log(math.Log(float64(n))), TwoChoices: math.Log(math.Log(float64(n))) / math.Ln2}
	all := make([]strategy.Endpoint, n)
	set := &strategy.Set{All: all, Usable: make([]int, n), Weights: make([]int, n), Scale: 1}
	for i := range all {
		all[i] = &endpoint{key: endpointKey(i), w: 1}
		set.Usable[i], set.Weights[i] = i, 1
	}
	req := &http.Request{Header: http.Header{}}
	count := make([]int, n)
	sum := 0
	for t := range trials {
		env := Env{Now: func() time.Time { return Epoch }, Rand: rand.New(rand.NewPCG(seed, 0xb1a5+uint64(t))), Backends: n}
		pk := p.New(env).Picker(set)
		clear(count)
		hi := 0
		for range n {
			i := pk.Pick(req, nil)
			count[i]++
			hi = max(hi, count[i])
		}
		sum += hi
		r.MaxMax = max(r.MaxMax, hi)
	}
	r.MeanMax = float64(sum) / float64(trials)
	return r
}

// Uniform is the one-choice baseline of [Bins]: each pick is a uniform
// draw over the usable members from Env.Rand. It is the simulation's own,
// not one of package strategy's.
var Uniform = Policy{Name: "uniform", Note: "one uniform random choice (baseline)",
	New: func(env Env) strategy.Strategy { return uniform{env.Rand} }}

type uniform struct{ r *rand.Rand }

func (u uniform) Picker(set *strategy.Set) strategy.Picker {
	return uniformPicker{r: u.r, usable: set.Usable}
}

type uniformPicker struct {
	r      *rand.Rand
	usable []int
}

func (u uniformPicker) Pick(*http.Request, *strategy.Tried) int {
	if len(u.usable) == 0 {
		return -1
	}
	return u.usable[u.r.IntN(len(u.usable))]
}
