package reliability

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/internal/faultkit"
)

// L1: exact distribution. Round robin gives exactly a third each, one
// client or many; smooth weighted 5:1:1 picks "a a b a c a a" in every
// cycle and exactly 5:1:1 under concurrency.
func TestL1_ExactDistribution(t *testing.T) {
	seq, conc := 699, scale(700, 7000)
	t.Run("round robin", func(t *testing.T) {
		e := newEnv(t, envConfig{n: 3, strategy: lb.RoundRobin()})
		for range seq {
			e.do(faultkit.Request{N: 1})
		}
		e.client.Run(context.Background(), faultkit.Load{Workers: 32, Count: conc - 1, Next: func(w, i int) faultkit.Request { return faultkit.Request{N: 1} }})
		total := seq + conc - 1
		for _, b := range e.backends {
			if got := b.Requests(); got != int64(total/3) {
				t.Errorf("L1: round robin gave %s %d of %d, want %d", b.Name, got, total, total/3)
			}
		}
		e.checkIntegrity(e.client.Attempts())
	})
	t.Run("smooth weighted 5:1:1", func(t *testing.T) {
		e := newEnv(t, envConfig{n: 3, strategy: lb.SmoothWeighted(), weights: []int{5, 1, 1}})
		var order strings.Builder
		for range 70 {
			order.WriteString(e.do(faultkit.Request{N: 1}).Backend)
		}
		if want := strings.Repeat("aabacaa", 10); order.String() != want {
			t.Errorf("L1: smooth weighted order\n%s\nwant\n%s", order.String(), want)
		}
		for _, b := range e.backends {
			b.ResetCounts()
		}
		e.client.Run(context.Background(), faultkit.Load{Workers: 32, Count: conc, Next: func(w, i int) faultkit.Request { return faultkit.Request{N: 1} }})
		want := []int64{int64(conc) * 5 / 7, int64(conc) / 7, int64(conc) / 7}
		for i, b := range e.backends {
			if got := b.Requests(); got != want[i] {
				t.Errorf("L1: smooth weighted under 32 clients gave %s %d, want %d", b.Name, got, want[i])
			}
		}
	})
}

// L2: least connections with one slow backend: it gets at most 15% of the
// requests; with equal backends none gets more than 40%; every in-flight
// counter ends at 0.
func TestL2_LeastConnSkew(t *testing.T) {
	run := func(t *testing.T, slow time.Duration) []int64 {
		e := newEnv(t, envConfig{n: 3, strategy: lb.LeastConn()})
		e.backends[0].SetBehavior(faultkit.Behavior{Delay: slow})
		e.backends[1].SetBehavior(faultkit.Behavior{Delay: time.Millisecond})
		e.backends[2].SetBehavior(faultkit.Behavior{Delay: time.Millisecond})
		e.client.Run(context.Background(), faultkit.Load{Workers: scale(16, 30), Duration: scale(1500*time.Millisecond, 5*time.Second),
			Next: func(w, i int) faultkit.Request { return faultkit.Request{N: 10} }})
		s := e.checkIntegrity(e.client.Attempts())
		if s.OK != s.Requests {
			t.Errorf("L2: %v", s)
		}
		return []int64{e.backends[0].Requests(), e.backends[1].Requests(), e.backends[2].Requests()}
	}
	t.Run("skewed", func(t *testing.T) {
		got := run(t, scale(100*time.Millisecond, 200*time.Millisecond))
		total := got[0] + got[1] + got[2]
		if got[0]*100 > total*15 {
			t.Errorf("L2: the slow backend took %s of %d requests (limit 15%%)", percent(got[0], total), total)
		}
		t.Logf("L2 skewed: %v (slow backend %s)", got, percent(got[0], total))
	})
	t.Run("equal", func(t *testing.T) {
		got := run(t, time.Millisecond)
		total := got[0] + got[1] + got[2]
		for i, n := range got {
			if n*100 > total*40 {
				t.Errorf("L2: backend %d took %s with equal backends (limit 40%%)", i, percent(n, total))
			}
		}
		t.Logf("L2 equal: %v", got)
	})
}

// L3: consistent hashing (in memory, 5 backends): a key always maps to the
// same backend, each backend holds its mean ± 25% of the keys, removing one
// moves only its keys, adding it back restores the mapping, and requests
// without a key are spread round robin.
func TestL3_ConsistentHash(t *testing.T) {
	hosts := memHosts(5)
	mem := newMem()
	pool := memPool(t, hosts)
	bal := lb.New(pool, lb.ConsistentHash(lb.QueryKey("k")), lb.WithTransport(mem))
	defer bal.Close()
	keys := scale(2000, 10000)
	mapping := func() map[int]string {
		m := make(map[int]string, keys)
		for k := range keys {
			code, be := serve(bal, fmt.Sprintf("/?k=key-%d", k))
			if code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
			m[k] = be
		}
		return m
	}
	m1 := mapping()
	if m2 := mapping(); fmt.Sprint(m1) != fmt.Sprint(m2) {
		t.Fatal("L3: the same key went to another backend")
	}
	per := map[string]int{}
	for _, be := range m1 {
		per[be]++
	}
	mean := keys / len(hosts)
	for _, h := range hosts {
		if per[h] < mean*3/4 || per[h] > mean*5/4 {
			t.Errorf("L3: %s holds %d keys, mean %d ± 25%%", h, per[h], mean)
		}
	}
	gone := hosts[2]
	if err := pool.Remove("http://" + gone); err != nil {
		t.Fatal(err)
	}
	m3 := mapping()
	for k, be := range m1 {
		if be != gone && m3[k] != be {
			t.Fatalf("L3: key %d moved from %s to %s when %s was removed", k, be, m3[k], gone)
		}
		if m3[k] == gone {
			t.Fatalf("L3: key %d still maps to the removed backend", k)
		}
	}
	if err := pool.Add(mustBackend(t, "http://"+gone)); err != nil {
		t.Fatal(err)
	}
	if m4 := mapping(); fmt.Sprint(m1) != fmt.Sprint(m4) {
		t.Error("L3: adding the backend back did not restore the mapping")
	}
	mem.take()
	for range 500 {
		serve(bal, "/")
	}
	empty := mem.take()
	for _, h := range hosts {
		if empty[h] != 100 {
			t.Errorf("L3: requests without a key: %v, want 100 each (round robin)", empty)
			break
		}
	}
	t.Logf("L3: %d keys over %d backends: %v", keys, len(hosts), per)
}

// L5: connection reuse with the balancer's own transport: new backend
// connections stay within twice the concurrency (no churn from Go's
// default MaxIdleConnsPerHost of 2).
func TestL5_ConnectionReuse(t *testing.T) {
	e := newEnv(t, envConfig{n: 2, defaultTransport: true})
	workers := scale(16, 64)
	n := e.client.Run(context.Background(), faultkit.Load{Workers: workers, Duration: scale(time.Second, 10*time.Second),
		Next: func(w, i int) faultkit.Request { return faultkit.Request{N: 512} }})
	s := e.checkIntegrity(e.client.Attempts())
	if s.OK != s.Requests {
		t.Errorf("L5: %v", s)
	}
	var conns int64
	for _, b := range e.backends {
		conns += b.NewConns()
	}
	if conns > int64(2*workers) {
		t.Errorf("L5: %d backend connections for %d requests at concurrency %d (limit %d)", conns, n, workers, 2*workers)
	}
	t.Logf("L5: %d requests by %d clients over %d backend connections", n, workers, conns)
}
