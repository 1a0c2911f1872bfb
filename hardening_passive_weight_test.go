package lb_test

import (
	"net/http"
	"net/url"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
)

// TestPassiveThresholdIsNotAPI: the failure threshold the smooth weighted
// strategies use is lb's plumbing, not a method users see on Passive.
func TestPassiveThresholdIsNotAPI(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeOf(health.Passive{}), reflect.TypeOf(&health.Passive{})} {
		_, found := typ.MethodByName("Threshold")
		assert.False(t, found, "%v has an exported Threshold method", typ)
	}
}

// countingObserver is an Observer of the user's own: it counts outcomes
// and never ejects.
type countingObserver struct{}

func (countingObserver) Track(*url.URL) health.Tracker { return countingTracker{} }

type countingTracker struct{}

func (countingTracker) Observe(o health.Outcome) (bool, time.Time) {
	return o.Status >= 500, time.Time{}
}
func (countingTracker) Reset() {}

// TestSmoothWeightedFailurePenaltyFollowsMaxFails: with smooth weighted
// round robin, a failure lowers the backend's effective weight by
// weight/MaxFails as nginx does, whether the Passive is a value or a
// pointer; MaxFails 0 means 1, a negative MaxFails and an Observer other
// than Passive lower nothing.
func TestSmoothWeightedFailurePenaltyFollowsMaxFails(t *testing.T) {
	fail := []int{500}
	for _, tc := range []struct {
		name string
		obs  health.Observer
		want float64 // a's effective weight after one failure, of 4
	}{
		{"Passive value, MaxFails 2", health.Passive{MaxFails: 2, FailStatuses: fail}, 2},
		{"Passive pointer, MaxFails 2", &health.Passive{MaxFails: 2, FailStatuses: fail}, 2},
		{"Passive value, MaxFails 4", health.Passive{MaxFails: 4, FailStatuses: fail}, 3},
		{"MaxFails 0 means 1", health.Passive{FailStatuses: fail}, 0},
		{"negative MaxFails: off", health.Passive{MaxFails: -1, FailStatuses: fail}, 4},
		{"an Observer of the user's own", countingObserver{}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := startUpstream(t, "a", func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, "broken", http.StatusInternalServerError)
			})
			b := startUpstream(t, "b", nil)
			pool, err := lb.NewPool(backendFor(t, a.url, lb.WithWeight(4)), backendFor(t, b.url, lb.WithWeight(4)))
			require.NoError(t, err)
			g := startGateway(t, pool, lb.SmoothWeighted(),
				lb.WithPassiveHealth(tc.obs), lb.WithRetry(lb.RetryPolicy{Tries: 1}))
			// Weights a4 b4: the first pick is a, which answers 500.
			r := g.mustDo(t, http.MethodGet, "/", "", nil, nil)
			require.Equal(t, http.StatusInternalServerError, r.status)
			for _, bs := range g.bal.Stats().Backends {
				if bs.URL == a.url {
					require.Equal(t, int64(1), bs.Requests, "a's attempts")
					assert.Equal(t, tc.want, bs.EffectiveWeight, "a's effective weight after one failure")
				}
			}
		})
	}
}
