package lb_test

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/strategy"
)

// TestBoundedHashSpillsAndReturns sends requests of one hot key through a
// BoundedHash balancer (c = 1.25) over four backends whose handlers hold
// every request until released, one request at a time so that in-flight
// builds up. The first goes to the key's home; a request goes elsewhere
// only when the home holds its bound (at least ⌊⌈1.25·k⌉/4⌋ of the k
// requests then in flight), and the home never holds more than
// ⌈⌈1.25·k⌉/4⌉. Once the requests are released and done, the key goes
// home again.
func TestBoundedHashSpillsAndReturns(t *testing.T) {
	arrived := make(chan string, 64)
	release := make(chan struct{})
	var once sync.Once
	hold := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-Hold") != "" {
				arrived <- name
				select {
				case <-release:
				case <-r.Context().Done():
				}
			}
			answerName(w, r, name)
		}
	}
	names := []string{"a", "b", "c", "d"}
	ups := make([]*upstream, len(names))
	for i, n := range names {
		ups[i] = startUpstream(t, n, hold(n))
	}
	t.Cleanup(func() { once.Do(func() { close(release) }) }) // before the servers close
	pool, bes := poolOf(t, urlsOf(ups...)...)
	s := lb.BoundedHash(lb.HeaderKey("X-User"), 1.25)
	bh := s.(*strategy.BoundedHash)
	gw := startGateway(t, pool, s)
	byName := make(map[string]*lb.Backend)
	for i, n := range names {
		byName[n] = bes[i]
	}
	idle := func() bool {
		for _, be := range bes {
			if bh.InFlight(be) != 0 {
				return false
			}
		}
		return true
	}

	user := http.Header{"X-User": {"hot-user"}}
	home := gw.served(t, user)
	eventually(t, "the first request's Done", idle)

	const n = 12
	held := http.Header{"X-User": {"hot-user"}, "X-Hold": {"1"}}
	results := make(chan outcome, n)
	var wg sync.WaitGroup
	landed := make(map[string]int)
	for k := 1; k <= n; k++ {
		wg.Go(func() {
			r, err := gw.do(context.Background(), http.MethodGet, "/", "", nil, held)
			if err != nil {
				r.status = -1
			}
			results <- r
		})
		at := await(t, arrived, "a held request")
		if k == 1 {
			assert.Equal(t, home, at, "the first held request")
		}
		tot := (125*k + 99) / 100 // ⌈1.25·k⌉ slots for the k in flight
		if at == home {
			assert.LessOrEqual(t, landed[home]+1, max(1, (tot+3)/4), "request %d: home over its bound", k)
		} else {
			assert.GreaterOrEqual(t, landed[home], max(1, tot/4), "request %d went to %s with home %s below its bound", k, at, home)
		}
		landed[at]++
		for name, be := range byName {
			require.Equal(t, landed[name], bh.InFlight(be), "request %d: in flight on %s", k, name)
		}
	}
	t.Logf("home %s; %d held requests landed %v", home, n, landed)
	assert.Less(t, landed[home], n, "nothing spilled")
	assert.GreaterOrEqual(t, len(landed), 3, "the hot key spilled to one neighbour only")

	once.Do(func() { close(release) })
	wg.Wait()
	close(results)
	for r := range results {
		require.Equal(t, http.StatusOK, r.status, "held request: %q", r.body)
	}
	eventually(t, "every held request's Done", idle)
	for k := range 5 {
		require.Equal(t, home, gw.served(t, user), "request %d after the release", k)
		eventually(t, "the request's Done", idle)
	}
}

// TestBoundedHashFactorChecked checks that lb.BoundedHash takes any c
// without panicking, that its Validate reports a c out of range with
// strategy.ErrInvalidBalanceFactor, and that New refuses such a strategy
// with a panic naming it, as it refuses options that cannot work.
func TestBoundedHashFactorChecked(t *testing.T) {
	pool, _ := poolOf(t, "http://127.0.0.1:1")
	key := lb.HeaderKey("X-User")
	for _, c := range []float64{0.99, 0, -1, math.NaN(), math.Inf(1), math.Inf(-1)} {
		var s lb.Strategy
		require.NotPanics(t, func() { s = lb.BoundedHash(key, c) }, "c = %v", c)
		err := s.(interface{ Validate() error }).Validate()
		require.Error(t, err, "c = %v", c)
		assert.True(t, errors.Is(err, strategy.ErrInvalidBalanceFactor), "c = %v: %v", c, err)
		func() {
			defer func() {
				msg, _ := recover().(string)
				assert.True(t, strings.HasPrefix(msg, "lb: New: ") && strings.Contains(msg, "BoundedHash"),
					"c = %v: New panicked with %q", c, msg)
			}()
			lb.New(pool, lb.BoundedHash(key, c)).Close()
		}()
	}
	for _, c := range []float64{1, 1.1, 1.25, 2, 1e9} {
		s := lb.BoundedHash(key, c)
		require.NoError(t, s.(interface{ Validate() error }).Validate(), "c = %v", c)
		require.NotPanics(t, func() { require.NoError(t, lb.New(pool, s).Close()) }, "c = %v", c)
	}
}
