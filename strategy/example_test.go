package strategy_test

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/tinylb/lb/strategy"
)

// backend is a minimal Endpoint: its URL, at weight w.
type backend struct {
	url string
	w   int
}

func (b *backend) Key() string { return b.url }
func (b *backend) Weight() int { return b.w }

// newSet describes all to a strategy, with the members at the positions in
// usable up.
func newSet(all []strategy.Endpoint, usable ...int) *strategy.Set {
	set := &strategy.Set{All: all, Usable: usable, Scale: 1}
	for _, e := range all {
		set.Weights = append(set.Weights, e.Weight())
	}
	return set
}

// firstUsable is a custom Strategy: every request goes to the first usable
// member it has not tried yet, so the members are a primary and its
// fallbacks, in configuration order. It keeps no state, so its picker is
// just the Set.
type firstUsable struct{}

func (firstUsable) Picker(set *strategy.Set) strategy.Picker { return firstPicker{set} }

type firstPicker struct{ set *strategy.Set }

func (p firstPicker) Pick(_ *http.Request, tried *strategy.Tried) int {
	for _, i := range p.set.Usable {
		if !tried.Has(p.set.All[i]) {
			return i
		}
	}
	return -1
}

// This example writes a strategy of its own and drives it as a balancer
// would: a request retries on the next member until none is left, and a
// health change publishes a new picker.
func Example_customStrategy() {
	all := []strategy.Endpoint{
		&backend{"http://10.0.0.1:80", 1},
		&backend{"http://10.0.0.2:80", 1},
		&backend{"http://10.0.0.3:80", 1},
	}
	var s strategy.Strategy = firstUsable{}
	p := s.Picker(newSet(all, 0, 1, 2))

	var tried strategy.Tried
	for {
		i := p.Pick(nil, &tried)
		if i < 0 {
			fmt.Println("no backend left")
			break
		}
		fmt.Println("try", all[i].Key())
		tried.Add(all[i])
	}

	p = s.Picker(newSet(all, 1, 2)) // 10.0.0.1 went down
	fmt.Println("new requests go to", all[p.Pick(nil, nil)].Key())
	// Output:
	// try http://10.0.0.1:80
	// try http://10.0.0.2:80
	// try http://10.0.0.3:80
	// no backend left
	// new requests go to http://10.0.0.2:80
}

// This example shows nginx's smooth weighted round robin spreading the
// picks of a heavy member between those of the light ones.
func ExampleNewSmoothWeighted() {
	all := []strategy.Endpoint{
		&backend{"http://a", 5},
		&backend{"http://b", 1},
		&backend{"http://c", 1},
	}
	p := strategy.NewSmoothWeighted().Picker(newSet(all, 0, 1, 2))
	var picks []string
	for range 7 {
		picks = append(picks, strings.TrimPrefix(all[p.Pick(nil, nil)].Key(), "http://"))
	}
	fmt.Println(strings.Join(picks, " "))
	// Output: a a b a c a a
}

// This example keeps each user on one backend by hashing a header, and
// shows that taking a backend down moves only its own users.
func ExampleNewConsistentHash() {
	all := []strategy.Endpoint{
		&backend{"http://10.0.0.1:80", 1},
		&backend{"http://10.0.0.2:80", 1},
		&backend{"http://10.0.0.3:80", 1},
	}
	s := strategy.NewConsistentHash(func(r *http.Request) string {
		return r.Header.Get("X-User")
	})
	up := s.Picker(newSet(all, 0, 1, 2))
	down := s.Picker(newSet(all, 0, 2)) // 10.0.0.2 is down
	for _, user := range []string{"a", "user42", "/index.html", "192.168.1.10"} {
		r := &http.Request{Header: http.Header{"X-User": {user}}}
		fmt.Printf("%-12s %s  then %s\n", user, all[up.Pick(r, nil)].Key(), all[down.Pick(r, nil)].Key())
	}
	// Output:
	// a            http://10.0.0.2:80  then http://10.0.0.1:80
	// user42       http://10.0.0.3:80  then http://10.0.0.3:80
	// /index.html  http://10.0.0.1:80  then http://10.0.0.1:80
	// 192.168.1.10 http://10.0.0.2:80  then http://10.0.0.1:80
}
