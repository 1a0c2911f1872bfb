package lb_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
)

const loadHeader = "Endpoint-Load-Metrics"

// reporting starts a backend that answers with its name and a load report
// of utilization *util (a string like "0.5") at 100 qps, as long as util
// is not empty.
func reporting(t *testing.T, name string, util *atomic.Value) *upstream {
	t.Helper()
	return startUpstream(t, name, func(w http.ResponseWriter, r *http.Request) {
		if u, _ := util.Load().(string); u != "" {
			w.Header().Set(loadHeader, "TEXT cpu_utilization="+u+", rps_fractional=100.0, eps=0")
		}
		answerName(w, r, name)
	})
}

func utilValue(u string) *atomic.Value {
	v := &atomic.Value{}
	v.Store(u)
	return v
}

// shares sends n requests and returns how many each backend served.
func shares(t *testing.T, g *gateway, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		got[g.served(t, nil)]++
	}
	return got
}

func loadStatsOf(t *testing.T, bal *lb.Balancer, u string) lb.BackendStats {
	t.Helper()
	for _, bs := range bal.Stats().Backends {
		if bs.URL == u {
			return bs
		}
	}
	t.Fatalf("no backend %s in Stats", u)
	return lb.BackendStats{}
}

// TestLoadReportsHeaderShares: three backends report utilization 0.2, 0.5
// and 0.8 at equal qps; once the 10 s blackout is over, smooth weighted
// round robin gives them shares in the inverse ratio (5 : 2 : 1.25).
func TestLoadReportsHeaderShares(t *testing.T) {
	clk := newHCClock()
	a := reporting(t, "a", utilValue("0.2"))
	b := reporting(t, "b", utilValue("0.5"))
	c := reporting(t, "c", utilValue("0.8"))
	pool, _ := poolOf(t, urlsOf(a, b, c)...)
	g := startGateway(t, pool, lb.SmoothWeighted(), lb.WithClock(clk.Now), lb.WithLoadReports(lb.LoadReports{UpdatePeriod: time.Hour}))

	before := shares(t, g, 30)
	assert.Equal(t, map[string]int{"a": 10, "b": 10, "c": 10}, before, "no weight before any report counts")
	assert.False(t, g.bal.UpdateLoadWeights(), "inside the blackout nothing changes")
	clk.Advance(9 * time.Second)
	shares(t, g, 30)
	assert.False(t, g.bal.UpdateLoadWeights(), "9 s into the blackout")
	clk.Advance(time.Second)
	shares(t, g, 30)
	require.True(t, g.bal.UpdateLoadWeights(), "the blackout is over")
	assert.False(t, g.bal.UpdateLoadWeights(), "nothing changed since")

	got := shares(t, g, 825)
	// Weights 500 : 200 : 125 of 825.
	assert.InDelta(t, 500, got["a"], 10, "a (utilization 0.2): %v", got)
	assert.InDelta(t, 200, got["b"], 10, "b (utilization 0.5): %v", got)
	assert.InDelta(t, 125, got["c"], 10, "c (utilization 0.8): %v", got)

	sa, sc := loadStatsOf(t, g.bal, a.url), loadStatsOf(t, g.bal, c.url)
	assert.InDelta(t, 1.82, sa.LoadFactor, 0.005)
	assert.InDelta(t, 0.45, sc.LoadFactor, 0.005)
	assert.InDelta(t, 1.82, sa.EffectiveWeight, 0.02, "EffectiveWeight includes the factor")
	assert.InDelta(t, 500, sa.DynamicWeight, 1e-6, "100 qps / 0.2")
	assert.InDelta(t, 125, sc.DynamicWeight, 1e-6)
	assert.Equal(t, 0.8, sc.LoadUtilization)
	assert.Equal(t, 100.0, sc.LoadQPS)
	assert.Zero(t, sc.LoadEPS)
	assert.Equal(t, clk.Now(), sc.LoadReportTime)
}

// TestLoadReportsHighUtilizationShareDrops: one backend of three reports a
// high utilization; its share drops (the smooth weighted effective weights
// move) and comes back when it reports a low one again.
func TestLoadReportsHighUtilizationShareDrops(t *testing.T) {
	clk := newHCClock()
	hot := utilValue("0.9")
	a := reporting(t, "a", hot)
	b := reporting(t, "b", utilValue("0.3"))
	c := reporting(t, "c", utilValue("0.3"))
	pool, _ := poolOf(t, urlsOf(a, b, c)...)
	g := startGateway(t, pool, lb.SmoothWeighted(), lb.WithClock(clk.Now),
		lb.WithLoadReports(lb.LoadReports{Blackout: time.Second, UpdatePeriod: time.Hour}))
	shares(t, g, 9)
	clk.Advance(time.Second)
	shares(t, g, 9)
	require.True(t, g.bal.UpdateLoadWeights())
	got := shares(t, g, 700)
	// 111 : 333 : 333.
	assert.InDelta(t, 100, got["a"], 5, "the hot backend: %v", got)

	hot.Store("0.3")
	shares(t, g, 9)
	clk.Advance(time.Second)
	require.True(t, g.bal.UpdateLoadWeights())
	got = shares(t, g, 300)
	assert.InDelta(t, 100, got["a"], 3, "cooled down: %v", got)
}

// TestLoadReportsForwardedOrStripped: the report reaches the client unless
// StripHeader is set.
func TestLoadReportsForwardedOrStripped(t *testing.T) {
	for _, strip := range []bool{false, true} {
		a := reporting(t, "a", utilValue("0.5"))
		pool, _ := poolOf(t, a.url)
		for _, via := range []bool{false, true} {
			opts := []lb.Option{lb.WithLoadReports(lb.LoadReports{StripHeader: strip})}
			if via {
				opts = append(opts, lb.ViaReverseProxy())
			}
			g := startGateway(t, pool, lb.RoundRobin(), opts...)
			r := g.mustDo(t, http.MethodGet, "/", "", nil, nil)
			require.Equal(t, http.StatusOK, r.status)
			if strip {
				assert.Empty(t, r.header.Values(loadHeader), "stripped (ReverseProxy path: %v)", via)
			} else {
				assert.Equal(t, "TEXT cpu_utilization=0.5, rps_fractional=100.0, eps=0", r.header.Get(loadHeader), "forwarded (ReverseProxy path: %v)", via)
			}
			assert.Equal(t, 0.5, loadStatsOf(t, g.bal, a.url).LoadUtilization, "read (ReverseProxy path: %v)", via)
			require.NoError(t, g.bal.Close())
		}
	}
}

// TestLoadReportsCustomHeader: the header name is configurable, in any case.
func TestLoadReportsCustomHeader(t *testing.T) {
	a := startUpstream(t, "a", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Load", "cpu_utilization:0.25,rps_fractional:40,application_utilization:0.5")
		w.Header().Set(loadHeader, "TEXT cpu_utilization=0.9, rps_fractional=1")
		answerName(w, r, "a")
	})
	pool, _ := poolOf(t, a.url)
	g := startGateway(t, pool, lb.RoundRobin(), lb.WithLoadReports(lb.LoadReports{Header: "x-load", StripHeader: true}))
	r := g.mustDo(t, http.MethodGet, "/", "", nil, nil)
	assert.Empty(t, r.header.Get("X-Load"))
	assert.NotEmpty(t, r.header.Get(loadHeader), "not the configured header: left alone")
	st := loadStatsOf(t, g.bal, a.url)
	assert.Equal(t, 0.5, st.LoadUtilization, "application_utilization preferred to cpu_utilization")
	assert.Equal(t, 40.0, st.LoadQPS)
}

// TestLoadReportsGarbageIgnored: reports that do not parse, or say nothing,
// change nothing and break nothing.
func TestLoadReportsGarbageIgnored(t *testing.T) {
	clk := newHCClock()
	bad := []string{"", "TEXT", "cpu_utilization=NaN,rps_fractional=1", "rps_fractional=100", "cpu_utilization=0.5",
		"cpu_utilization=0.5,cpu_utilization=0.1,rps_fractional=1", "JSON {", "\x7f=\x7f", strings.Repeat("a=1,", 1000),
		"cpu_utilization=-1,rps_fractional=100", "cpu_utilization=0.5,rps_fractional=-100", "BIN AAAA"}
	var k atomic.Int64
	a := startUpstream(t, "a", func(w http.ResponseWriter, r *http.Request) {
		w.Header()[loadHeader] = []string{bad[int(k.Add(1))%len(bad)]}
		answerName(w, r, "a")
	})
	b := reporting(t, "b", utilValue("0.5"))
	pool, _ := poolOf(t, a.url, b.url)
	g := startGateway(t, pool, lb.SmoothWeighted(), lb.WithClock(clk.Now), lb.WithLoadReports(lb.LoadReports{Blackout: time.Second, UpdatePeriod: time.Hour}))
	shares(t, g, 2*len(bad))
	clk.Advance(time.Second)
	shares(t, g, 2*len(bad))
	assert.False(t, g.bal.UpdateLoadWeights(), "one valid weight of two: the configured weights stand")
	st := loadStatsOf(t, g.bal, a.url)
	assert.Zero(t, st.DynamicWeight)
	assert.True(t, st.LoadReportTime.IsZero())
	assert.Equal(t, 1.0, st.LoadFactor)
}

// TestLoadReportsExpiry: when reports stop, the weights expire after 3 min
// and the configured weights come back.
func TestLoadReportsExpiry(t *testing.T) {
	clk := newHCClock()
	ua, ub := utilValue("0.2"), utilValue("0.8")
	a, b := reporting(t, "a", ua), reporting(t, "b", ub)
	pool, _ := poolOf(t, a.url, b.url)
	g := startGateway(t, pool, lb.SmoothWeighted(), lb.WithClock(clk.Now), lb.WithLoadReports(lb.LoadReports{UpdatePeriod: time.Hour}))
	shares(t, g, 4)
	clk.Advance(10 * time.Second)
	shares(t, g, 4)
	require.True(t, g.bal.UpdateLoadWeights())
	assert.InDelta(t, 1.6, loadStatsOf(t, g.bal, a.url).LoadFactor, 1e-9)

	ua.Store("")
	ub.Store("")
	shares(t, g, 4)
	clk.Advance(3*time.Minute - time.Second)
	assert.False(t, g.bal.UpdateLoadWeights(), "not yet expired")
	clk.Advance(time.Second)
	require.True(t, g.bal.UpdateLoadWeights(), "expired")
	for _, u := range []string{a.url, b.url} {
		st := loadStatsOf(t, g.bal, u)
		assert.Equal(t, 1.0, st.LoadFactor)
		assert.Equal(t, 1.0, st.EffectiveWeight)
		assert.Zero(t, st.DynamicWeight)
		assert.False(t, st.LoadReportTime.IsZero(), "the last report is still shown")
	}
	assert.Equal(t, map[string]int{"a": 50, "b": 50}, shares(t, g, 100))
}

// TestLoadReportsWithConfiguredWeights: reports correct configured weights
// rather than replace them: weights that match the reported capacities
// stand, and equal reports even out unequal weights. Slow start's finer
// scale combines with the factors' (Set.Scale 16 × 100).
func TestLoadReportsWithConfiguredWeights(t *testing.T) {
	clk := newHCClock()
	ua := utilValue("0.16666667") // 600 at 100 qps: 3× b's 200
	a, b := reporting(t, "a", ua), reporting(t, "b", utilValue("0.5"))
	ba, bb := backendFor(t, a.url, lb.WithWeight(3)), backendFor(t, b.url)
	pool, err := lb.NewPool(ba, bb)
	require.NoError(t, err)
	g := startGateway(t, pool, lb.SmoothWeighted(), lb.WithClock(clk.Now),
		lb.WithSlowStart(time.Minute), lb.WithLoadReports(lb.LoadReports{Blackout: time.Second, UpdatePeriod: time.Hour}))
	shares(t, g, 8)
	clk.Advance(time.Second)
	shares(t, g, 8)
	g.bal.UpdateLoadWeights()
	assert.InDelta(t, 1, loadStatsOf(t, g.bal, a.url).LoadFactor, 1e-9)
	assert.InDelta(t, 3, loadStatsOf(t, g.bal, a.url).EffectiveWeight, 1e-9)
	assert.InDelta(t, 1, loadStatsOf(t, g.bal, b.url).EffectiveWeight, 1e-9)
	assert.Equal(t, map[string]int{"a": 75, "b": 25}, shares(t, g, 100))

	ua.Store("0.5") // as loaded as b at the same qps: no more capacity than b
	shares(t, g, 4)
	clk.Advance(time.Second)
	require.True(t, g.bal.UpdateLoadWeights())
	// a: (200/3)/(400/4) = 0.67 of 3; b: 2 of 1.
	assert.InDelta(t, 2.01, loadStatsOf(t, g.bal, a.url).EffectiveWeight, 1e-9)
	assert.InDelta(t, 2, loadStatsOf(t, g.bal, b.url).EffectiveWeight, 1e-9)
	got := shares(t, g, 401)
	assert.InDelta(t, 201, got["a"], 2, "%v", got)
}

// TestLoadReportsPoll: with PollPath the balancer asks each backend for a
// report on its own; a backend whose poll fails is not marked down.
func TestLoadReportsPoll(t *testing.T) {
	clk := newHCClock()
	var polls [3]atomic.Int64
	mk := func(i int, name string, answer func(w http.ResponseWriter)) *upstream {
		return startUpstream(t, name, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/load" {
				assert.Equal(t, http.MethodGet, r.Method)
				polls[i].Add(1)
				answer(w)
				return
			}
			answerName(w, r, name)
		})
	}
	a := mk(0, "a", func(w http.ResponseWriter) { fmt.Fprint(w, "cpu_utilization=0.2\nrps_fractional=50\n") })
	b := mk(1, "b", func(w http.ResponseWriter) { w.Header().Set(loadHeader, "TEXT cpu_utilization=0.8, rps_fractional=50") })
	c := mk(2, "c", func(w http.ResponseWriter) { http.Error(w, "no", http.StatusInternalServerError) })
	pool, _ := poolOf(t, a.url, b.url, c.url)
	g := startGateway(t, pool, lb.SmoothWeighted(), lb.WithClock(clk.Now), lb.WithLoadReports(lb.LoadReports{
		PollPath: "/load", PollInterval: 20 * time.Millisecond, Blackout: time.Second, UpdatePeriod: time.Hour,
	}))
	eventually(t, "every backend polled twice", func() bool {
		return polls[0].Load() >= 2 && polls[1].Load() >= 2 && polls[2].Load() >= 2
	})
	clk.Advance(time.Second)
	n0, n1 := polls[0].Load(), polls[1].Load()
	eventually(t, "polls after the clock moved", func() bool { return polls[0].Load() > n0 && polls[1].Load() > n1 })
	require.True(t, g.bal.UpdateLoadWeights())
	sa, sb, sc := loadStatsOf(t, g.bal, a.url), loadStatsOf(t, g.bal, b.url), loadStatsOf(t, g.bal, c.url)
	assert.InDelta(t, 1.6, sa.LoadFactor, 1e-9, "the body of the answer")
	assert.InDelta(t, 0.4, sb.LoadFactor, 1e-9, "the header of the answer")
	assert.Equal(t, 1.0, sc.LoadFactor, "no report: the mean")
	assert.Equal(t, lb.StateUp, sc.State, "a failing poll is no health failure")
	got := shares(t, g, 300)
	assert.Equal(t, map[string]int{"a": 160, "b": 40, "c": 100}, got)
}

// TestLoadReportsPollUnreachable: a backend whose poll cannot connect at
// all stays up, and its requests go on.
func TestLoadReportsPollUnreachable(t *testing.T) {
	a := startUpstream(t, "a", nil) // answers 200 without a report everywhere
	pool, _ := poolOf(t, a.url)
	g := startGateway(t, pool, lb.RoundRobin(), lb.WithLoadReports(lb.LoadReports{PollPath: "/none", PollInterval: 10 * time.Millisecond}))
	eventually(t, "polls", func() bool { return a.count() >= 3 })
	assert.Equal(t, lb.StateUp, loadStatsOf(t, g.bal, a.url).State)
	assert.Equal(t, "a", g.served(t, nil))
}

// TestLoadReportsMeasured: without any report, Measured mode weighs each
// backend by its measured latency and failures: a slow backend and a
// failing one get less. The backends move the balancer's clock by their
// latency, so that the measurement is exact.
func TestLoadReportsMeasured(t *testing.T) {
	clk := newHCClock()
	var n atomic.Int64
	mk := func(name string, lat time.Duration, failEvery int64) *upstream {
		return startUpstream(t, name, func(w http.ResponseWriter, r *http.Request) {
			clk.Advance(lat)
			if failEvery > 0 && n.Add(1)%failEvery == 0 {
				http.Error(w, "failed", http.StatusInternalServerError)
				return
			}
			answerName(w, r, name)
		})
	}
	fast := mk("fast", 10*time.Millisecond, 0)
	slow := mk("slow", 40*time.Millisecond, 0)
	failing := mk("failing", 10*time.Millisecond, 2)
	pool, _ := poolOf(t, fast.url, slow.url, failing.url)
	g := startGateway(t, pool, lb.SmoothWeighted(), lb.WithClock(clk.Now),
		lb.WithPassiveHealth(health.Passive{MaxFails: -1, FailStatuses: []int{500}}),
		lb.WithLoadReports(lb.LoadReports{Measured: true, Blackout: time.Second, MeasureWindow: 5 * time.Second, UpdatePeriod: time.Hour}))
	for range 150 {
		g.mustDo(t, http.MethodGet, "/", "", nil, nil)
	}
	require.True(t, g.bal.UpdateLoadWeights())
	sf, ss, sx := loadStatsOf(t, g.bal, fast.url), loadStatsOf(t, g.bal, slow.url), loadStatsOf(t, g.bal, failing.url)
	// Weights 1/10ms = 100, 1/40ms = 25, (1−0.5)/10ms = 50.
	assert.InDelta(t, 100, sf.DynamicWeight, 1, "fast")
	assert.InDelta(t, 25, ss.DynamicWeight, 1, "slow")
	assert.InDelta(t, 50, sx.DynamicWeight, 1, "failing")
	assert.InDelta(t, 4, sf.LoadFactor/ss.LoadFactor, 0.1)
	assert.InDelta(t, 2, sf.LoadFactor/sx.LoadFactor, 0.1)
	assert.InDelta(t, sx.LoadQPS/2, sx.LoadEPS, 0.05*sx.LoadQPS, "half the failing backend's attempts failed")
	assert.InDelta(t, sf.LoadQPS*0.010, sf.LoadUtilization, 1e-6, "utilization = qps × latency")

	got := map[string]int{}
	for range 175 {
		r := g.mustDo(t, http.MethodGet, "/", "", nil, nil)
		name, _, _ := strings.Cut(string(r.body), "|")
		if r.status != http.StatusOK {
			name = "failing"
		}
		got[name]++
	}
	assert.Greater(t, got["fast"], got["failing"], "%v", got)
	assert.Greater(t, got["failing"], got["slow"], "%v", got)
}

// TestLoadReportsMeasuredIgnoresHeaders: Measured mode reads no report.
func TestLoadReportsMeasuredIgnoresHeaders(t *testing.T) {
	a := reporting(t, "a", utilValue("0.5"))
	pool, _ := poolOf(t, a.url)
	g := startGateway(t, pool, lb.RoundRobin(), lb.WithLoadReports(lb.LoadReports{Measured: true, StripHeader: true}))
	r := g.mustDo(t, http.MethodGet, "/", "", nil, nil)
	assert.NotEmpty(t, r.header.Get(loadHeader), "not read, not stripped")
	assert.Greater(t, loadStatsOf(t, g.bal, a.url).LoadQPS, 0.0, "measured")
	assert.Zero(t, loadStatsOf(t, g.bal, a.url).LoadEPS)
}

// TestLoadReportsOffLeavesStatsZero: without the option the load fields
// stay zero.
func TestLoadReportsOffLeavesStatsZero(t *testing.T) {
	a := reporting(t, "a", utilValue("0.5"))
	pool, _ := poolOf(t, a.url)
	g := startGateway(t, pool, lb.RoundRobin())
	r := g.mustDo(t, http.MethodGet, "/", "", nil, nil)
	assert.NotEmpty(t, r.header.Get(loadHeader))
	st := loadStatsOf(t, g.bal, a.url)
	assert.Zero(t, st.LoadFactor)
	assert.Zero(t, st.LoadUtilization)
	assert.False(t, g.bal.UpdateLoadWeights())
}

// TestLoadReportsDownRestartsBlackout: a backend that goes down starts a
// new blackout when it comes back.
func TestLoadReportsDownRestartsBlackout(t *testing.T) {
	clk := newHCClock()
	a, b := reporting(t, "a", utilValue("0.2")), reporting(t, "b", utilValue("0.8"))
	pool, _ := poolOf(t, a.url, b.url)
	g := startGateway(t, pool, lb.SmoothWeighted(), lb.WithClock(clk.Now), lb.WithLoadReports(lb.LoadReports{Blackout: time.Second, UpdatePeriod: time.Hour}))
	shares(t, g, 4)
	clk.Advance(time.Second)
	shares(t, g, 4)
	require.True(t, g.bal.UpdateLoadWeights())
	require.InDelta(t, 0.4, loadStatsOf(t, g.bal, b.url).LoadFactor, 1e-9)

	require.NoError(t, pool.SetMaintenance(b.url, true))
	require.NoError(t, pool.SetMaintenance(b.url, false))
	assert.InDelta(t, 0.4, loadStatsOf(t, g.bal, b.url).LoadFactor, 1e-9, "maintenance is not an outage")
	b.srv.Close()
	for range 4 {
		assert.Equal(t, "a", g.served(t, nil), "b's requests are retried on a")
	}
	require.Equal(t, lb.StateEjected, loadStatsOf(t, g.bal, b.url).State)
	assert.Zero(t, loadStatsOf(t, g.bal, b.url).DynamicWeight, "b's weight went with its outage")
	require.True(t, g.bal.UpdateLoadWeights())
	assert.Equal(t, 1.0, loadStatsOf(t, g.bal, a.url).LoadFactor, "one weight left: the configured weights")
}

// TestLoadReportsOtherStrategies: least connections uses the weights (its
// ties, here every pick since requests are sequential, go by the smooth
// weighted pass); round robin ignores them.
func TestLoadReportsOtherStrategies(t *testing.T) {
	for _, tt := range []struct {
		name string
		s    lb.Strategy
		want map[string]int
	}{
		{"leastconn", lb.LeastConn(), map[string]int{"a": 160, "b": 40}},
		{"roundrobin", lb.RoundRobin(), map[string]int{"a": 100, "b": 100}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clk := newHCClock()
			a, b := reporting(t, "a", utilValue("0.2")), reporting(t, "b", utilValue("0.8"))
			pool, _ := poolOf(t, a.url, b.url)
			g := startGateway(t, pool, tt.s, lb.WithClock(clk.Now),
				lb.WithLoadReports(lb.LoadReports{Blackout: time.Second, UpdatePeriod: time.Hour}))
			shares(t, g, 4)
			clk.Advance(time.Second)
			shares(t, g, 4)
			g.bal.UpdateLoadWeights()
			require.InDelta(t, 1.6, loadStatsOf(t, g.bal, a.url).LoadFactor, 1e-9)
			assert.Equal(t, tt.want, shares(t, g, 200))
		})
	}
}
