package strategy

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// testEP is an Endpoint for tests. Compare by pointer.
type testEP struct {
	name string // short name for messages: a, b, c...
	key  string
	w    int
}

func (e *testEP) Key() string    { return e.key }
func (e *testEP) Weight() int    { return e.w }
func (e *testEP) String() string { return e.name }

// endpoints returns one endpoint per weight, named a, b, c... with keys
// http://10.0.0.1:80, http://10.0.0.2:80...
func endpoints(weights ...int) []Endpoint {
	all := make([]Endpoint, len(weights))
	for i, w := range weights {
		all[i] = &testEP{name: string(rune('a' + i)), key: fmt.Sprintf("http://10.0.0.%d:80", i+1), w: w}
	}
	return all
}

// hostEndpoints returns n endpoints of weight 1 with keys
// http://10.0.0.1:80 ... http://10.0.0.<n>:80.
func hostEndpoints(n int) []Endpoint {
	all := make([]Endpoint, n)
	for i := range all {
		all[i] = &testEP{name: fmt.Sprintf(".%d", i+1), key: fmt.Sprintf("http://10.0.0.%d:80", i+1), w: 1}
	}
	return all
}

// newSet returns a Set over all with Scale 1, Weights from Weight() and the
// given usable positions (every member if usable is nil).
func newSet(all []Endpoint, usable []int) *Set {
	return scaledSet(all, usable, 1)
}

// scaledSet is newSet with Weights = Weight()*scale.
func scaledSet(all []Endpoint, usable []int, scale int) *Set {
	s := &Set{All: all, Usable: usable, Weights: make([]int, len(all)), Scale: scale}
	for i, e := range all {
		s.Weights[i] = e.Weight() * scale
	}
	if usable == nil {
		s.Usable = make([]int, len(all))
		for i := range all {
			s.Usable[i] = i
		}
	}
	return s
}

// without returns every position in [0,n) but those in out.
func without(n int, out ...int) []int {
	u := make([]int, 0, n)
next:
	for i := range n {
		for _, o := range out {
			if i == o {
				continue next
			}
		}
		u = append(u, i)
	}
	return u
}

// pickNames makes n picks with p and returns the names of the members, space
// separated. A -1 shows as "-".
func pickNames(t testing.TB, p Picker, all []Endpoint, n int) string {
	t.Helper()
	var b strings.Builder
	for k := range n {
		if k > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(name(all, p.Pick(nil, nil)))
	}
	return b.String()
}

// name is the name of all[i], or "-" for -1.
func name(all []Endpoint, i int) string {
	if i < 0 {
		return "-"
	}
	if i >= len(all) {
		return fmt.Sprintf("!%d", i)
	}
	return all[i].(*testEP).name
}

// headerKey is a key func that reads the X-Key header.
func headerKey(r *http.Request) string {
	if v := r.Header["X-Key"]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// keyReq returns a request whose X-Key header is key.
func keyReq(key string) *http.Request {
	return &http.Request{Header: http.Header{"X-Key": {key}}}
}
