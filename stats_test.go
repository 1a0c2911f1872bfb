package lb_test

import (
	"encoding/json"
	"expvar"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/tinylb/lb"
)

func TestStatsAndExpvar(t *testing.T) {
	a := startNamed(t, "a", nil)
	pool, _ := lb.NewPool(mustBackend(t, a.srv.URL, lb.WithWeight(3)))
	bal := lb.New(pool, lb.SmoothWeighted())
	defer bal.Close()
	front := startNamed(t, "front", bal.ServeHTTP)
	if f := getAll(front.srv.URL, 2, 10); f != 0 {
		t.Fatalf("%d failed", f)
	}
	st := bal.Stats()
	if len(st.Backends) != 1 {
		t.Fatalf("%d backends", len(st.Backends))
	}
	bs := st.Backends[0]
	if bs.URL != a.srv.URL || bs.Weight != 3 || bs.EffectiveWeight != 3 || bs.State != lb.StateUp ||
		bs.Requests != 10 || bs.Failures != 0 || bs.Active != 0 || st.Requests != 10 {
		t.Fatalf("stats %+v", bs)
	}
	var n int64
	for _, c := range bs.LatencyHistogram {
		n += c
	}
	if n != 10 || bs.LatencyEWMA <= 0 || bs.LatencySum < bs.LatencyEWMA {
		t.Fatalf("latency: histogram total %d, EWMA %v, sum %v", n, bs.LatencyEWMA, bs.LatencySum)
	}

	// expvar names live as long as the process: a fresh one per run
	// keeps go test -count N passing.
	name := fmt.Sprintf("tinylb_test_%d", expvarRuns.Add(1))
	if err := bal.PublishExpvar(name); err != nil {
		t.Fatal(err)
	}
	if err := bal.PublishExpvar(name); err == nil {
		t.Fatal("publishing a taken name succeeded")
	}
	var got struct {
		Backends []struct {
			URL   string
			State string
		}
		Requests int64
	}
	if err := json.Unmarshal([]byte(expvar.Get(name).String()), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Backends) != 1 || got.Backends[0].URL != a.srv.URL || got.Backends[0].State != "up" || got.Requests != 10 {
		t.Fatalf("expvar JSON %+v", got)
	}
}

var expvarRuns atomic.Int64
