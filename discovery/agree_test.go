package discovery_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/discovery"
	"github.com/tinylb/lb/internal/dnstest"
	"github.com/tinylb/lb/strategy"
)

// realHeader sends a request through the real transport to the backend;
// without it, the balancer's choice is answered by recordingTransport.
const realHeader = "X-Real"

// recordingTransport answers each request with the backend the balancer
// chose (its host:port), without a connection, unless the request carries
// realHeader: so the balancer's whole path (snapshot, strategy, attempt)
// is exercised for every key at the cost of a function call, and the real
// one for a sample.
type recordingTransport struct{ real http.RoundTripper }

func (rt recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get(realHeader) != "" {
		return rt.real.RoundTrip(req)
	}
	if req.Body != nil {
		req.Body.Close()
	}
	return &http.Response{
		StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:  http.Header{},
		Body:    io.NopCloser(strings.NewReader(req.URL.Host)),
		Request: req,
	}, nil
}

// instance is one proxy of a fleet: its own pool, balancer (with its own
// ring), watcher and DNS source.
type instance struct {
	pool *lb.Pool
	bal  *lb.Balancer
	w    *discovery.Watcher
}

// ring returns the host:port of the backend each key maps to on a
// consistent-hash ring built, as the balancer builds its own, over the
// pool's members in order, all usable.
func (in *instance) ring(keys []string) []string {
	backends := in.pool.Backends()
	set := &strategy.Set{Scale: 1}
	for i, b := range backends {
		set.All = append(set.All, b)
		set.Usable = append(set.Usable, i)
		set.Weights = append(set.Weights, b.Weight())
	}
	picker := strategy.NewConsistentHash(lb.HeaderKey("X-User")).Picker(set)
	req := httptest.NewRequest(http.MethodGet, "http://front/", nil)
	out := make([]string, len(keys))
	for i, k := range keys {
		req.Header.Set("X-User", k)
		out[i] = backends[picker.Pick(req, &strategy.Tried{})].URL().Host
	}
	return out
}

// route returns the host:port of the backend the balancer chooses for
// each key.
func (in *instance) route(t *testing.T, keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		req := httptest.NewRequest(http.MethodGet, "http://front/", nil)
		req.Header.Set("X-User", k)
		rec := httptest.NewRecorder()
		in.bal.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("key %s: status %d", k, rec.Code)
		}
		out[i] = rec.Body.String()
	}
	return out
}

// Ten independent balancers, each with its own consistent-hash ring, fed
// by one DNS name, send each of 10,000 keys to the same backend, and still
// do after a member joins and another leaves.
//
// Every key is mapped on a ring built over each instance's pool (what the
// balancer builds its ring over); 1,000 keys go through each balancer, to
// check that it chooses as its ring does (the backend is recorded by the
// transport), and a sample of them through real HTTP, to check that the
// backend chosen is the one that answers. 100,000 requests through the
// balancers would take a minute under the race detector.
func TestIndependentBalancersAgree(t *testing.T) {
	const nInst, nKeys = 10, 10000
	servers := make([]*server, 6)
	byHost := map[string]string{}
	for i := range servers {
		servers[i] = newServer(t, fmt.Sprintf("s%d", i))
		byHost[strings.TrimPrefix(servers[i].URL, "http://")] = servers[i].name
	}
	dns := dnstest.Start(t)
	dns.SetAddrs("h.svc.test", 300, "127.0.0.1")
	srvOf := func(idx ...int) []dnstest.SRV {
		var out []dnstest.SRV
		for _, i := range idx {
			out = append(out, dnstest.SRV{Priority: 1, Weight: uint16(1 + i%3), Port: uint16(portOf(t, servers[i].URL)), Target: "h.svc.test"})
		}
		return out
	}
	dns.SetSRV("_http._tcp.svc.test", 300, srvOf(0, 1, 2, 3, 4)...)

	tr := lb.NewTransport()
	t.Cleanup(tr.CloseIdleConnections)
	fleet := make([]*instance, nInst)
	for i := range fleet {
		in := &instance{pool: &lb.Pool{}}
		in.bal = lb.New(in.pool, lb.ConsistentHash(lb.HeaderKey("X-User")), lb.WithTransport(recordingTransport{tr}))
		t.Cleanup(func() { in.bal.Close() })
		src := discovery.SRV("http", "tcp", "svc.test", discovery.WithResolverAddr(dns.Addr),
			discovery.WithRefresh(50*time.Millisecond), discovery.WithMinTTL(50*time.Millisecond))
		in.w = watch(t, src, in.pool, discovery.WithDebounce(0))
		require.NoError(t, in.w.WaitReady(context.Background()))
		fleet[i] = in
	}
	keys := make([]string, nKeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("user-%d", i)
	}

	check := func(phase string) []string { return checkAgreement(t, fleet, keys, byHost, phase) }
	start := time.Now()
	before := check("at start")
	t.Logf("one check of %d keys on %d balancers: %v", nKeys, nInst, time.Since(start))

	// s5 joins, s0 leaves.
	dns.SetSRV("_http._tcp.svc.test", 300, srvOf(1, 2, 3, 4, 5)...)
	want := []string{servers[1].URL, servers[2].URL, servers[3].URL, servers[4].URL, servers[5].URL}
	slices.Sort(want)
	for i, in := range fleet {
		waitFor(t, fmt.Sprintf("balancer %d follows", i), func() bool {
			got := members(in.pool)
			slices.Sort(got)
			return slices.Equal(got, want)
		})
	}
	after := check("after a join and a leave")

	// Consistent hashing: only the keys of s0 and those s5 takes moved.
	s0, s5 := strings.TrimPrefix(servers[0].URL, "http://"), strings.TrimPrefix(servers[5].URL, "http://")
	for k := range keys {
		if before[k] != s0 && after[k] != s5 {
			require.Equal(t, before[k], after[k], "key %s moved from %s to %s", keys[k], before[k], after[k])
		}
	}
}

// agreementSizes are the keys routed through each balancer and the
// sample of them sent through real HTTP.
const nRouted, nSample = 1000, 20

// checkAgreement maps keys on each instance's ring and requires every
// instance to agree with the first, and checks a part of them through the
// balancers and a sample through real HTTP. It returns the mapping.
func checkAgreement(t *testing.T, fleet []*instance, keys []string, byHost map[string]string, phase string) []string {
	t.Helper()
	nInst, nKeys := len(fleet), len(keys)
	maps := make([][]string, nInst)
	for i, in := range fleet {
		maps[i] = in.ring(keys)
	}
	for i := 1; i < nInst; i++ {
		differ := 0
		for k := range keys {
			if maps[i][k] != maps[0][k] {
				differ++
			}
		}
		require.Zero(t, differ, "%s: balancer %d disagrees with balancer 0 on %d of %d keys", phase, i, differ, nKeys)
	}
	used := map[string]int{}
	for _, h := range maps[0] {
		used[h]++
	}
	require.Len(t, used, fleet[0].pool.Len(), "%s: every member takes keys: %v", phase, used)

	var wg sync.WaitGroup
	routed := make([][]string, nInst)
	for i, in := range fleet {
		wg.Go(func() { routed[i] = in.route(t, keys[:nRouted]) })
	}
	wg.Wait()
	for i := range fleet {
		require.Equal(t, maps[0][:nRouted], routed[i], "%s: balancer %d routes as the ring maps", phase, i)
	}

	for i, in := range fleet {
		fr := httptest.NewServer(in.bal)
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
		for k := 0; k < nRouted; k += nRouted / nSample {
			_, body := get(t, hc, fr.URL, "X-User", keys[k], realHeader, "1")
			require.Equal(t, byHost[maps[0][k]], body, "%s: balancer %d, key %s", phase, i, keys[k])
		}
		hc.CloseIdleConnections()
		fr.Close()
	}
	return maps[0]
}
