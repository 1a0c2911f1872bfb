package discovery_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/discovery"
	"github.com/tinylb/lb/health"
	"github.com/tinylb/lb/internal/dnstest"
)

// SRV records map to targets: the lowest priority value makes the
// primaries, any higher one backups; the weight is the backend's weight,
// 0 counting as 1 and values above lb.MaxWeight as lb.MaxWeight. Requests
// follow: the primaries share them by weight, the backups get none.
func TestSRVSourceMapsPriorityAndWeight(t *testing.T) {
	a, b, c, d := newServer(t, "a"), newServer(t, "b"), newServer(t, "c"), newServer(t, "d")
	dns := dnstest.Start(t)
	dns.SetAddrs("a.svc.test", 300, "127.0.0.1")
	dns.SetSRV("_http._tcp.svc.test", 300,
		dnstest.SRV{Priority: 10, Weight: 3, Port: uint16(portOf(t, a.URL)), Target: "a.svc.test"},
		dnstest.SRV{Priority: 10, Weight: 0, Port: uint16(portOf(t, b.URL)), Target: "a.svc.test"},
		dnstest.SRV{Priority: 20, Weight: 60000, Port: uint16(portOf(t, c.URL)), Target: "a.svc.test"},
		dnstest.SRV{Priority: 30, Weight: 1, Port: uint16(portOf(t, d.URL)), Target: "a.svc.test"},
	)
	pool := &lb.Pool{}
	_, fr := front(t, pool, lb.SmoothWeighted(), lb.WithPassiveHealth(health.Passive{MaxFails: -1}))
	src := discovery.SRV("http", "tcp", "svc.test", discovery.WithResolverAddr(dns.Addr), discovery.WithRefresh(50*time.Millisecond), discovery.WithMinTTL(50*time.Millisecond))
	w := watch(t, src, pool, discovery.WithDebounce(0))
	require.NoError(t, w.WaitReady(context.Background()))

	type tier struct {
		weight int
		backup bool
	}
	got := map[string]tier{}
	for _, be := range pool.Backends() {
		got[be.Key()] = tier{be.Weight(), be.Backup()}
	}
	assert.Equal(t, map[string]tier{
		a.URL: {3, false}, b.URL: {1, false}, c.URL: {lb.MaxWeight, true}, d.URL: {1, true},
	}, got)

	hc := client(t)
	seen := map[string]int{}
	for range 8 {
		_, body := get(t, hc, fr.URL)
		seen[body]++
	}
	assert.Equal(t, map[string]int{"a": 6, "b": 2}, seen)

	// The primaries go: the lowest priority left (20) is not promoted,
	// the pool keeps its two tiers as SRV says, and the backups serve.
	dns.SetSRV("_http._tcp.svc.test", 300,
		dnstest.SRV{Priority: 20, Weight: 1, Port: uint16(portOf(t, c.URL)), Target: "a.svc.test"},
		dnstest.SRV{Priority: 30, Weight: 1, Port: uint16(portOf(t, d.URL)), Target: "a.svc.test"},
	)
	waitFor(t, "the primaries removed", func() bool { return pool.Len() == 2 })
	cb, _ := pool.Get(c.URL)
	db, _ := pool.Get(d.URL)
	assert.False(t, cb.Backup(), "priority 20 is now the lowest: primary")
	assert.True(t, db.Backup())
	_, body := get(t, hc, fr.URL)
	assert.Equal(t, "c", body)
}

// A name given whole (service and proto empty) is looked up as it is; a
// target that cannot be looked up fails the lookup, and the pool keeps
// its set.
func TestSRVSourceTargetFailure(t *testing.T) {
	dns := dnstest.Start(t)
	dns.SetAddrs("a.svc.test", 300, "192.0.2.1", "2001:db8::1")
	dns.SetSRV("_grpc._tcp.svc.test", 300, dnstest.SRV{Priority: 0, Weight: 5, Port: 9000, Target: "a.svc.test"})
	ch := collect(t, discovery.SRV("", "", "_grpc._tcp.svc.test", discovery.WithScheme("https"),
		discovery.WithResolverAddr(dns.Addr), discovery.WithRefresh(50*time.Millisecond), discovery.WithMinTTL(50*time.Millisecond)))
	p := next(t, ch)
	require.NoError(t, p.err)
	assert.Equal(t, []string{"https://192.0.2.1:9000", "https://[2001:db8::1]:9000"}, urlsOf(p.set))
	assert.Equal(t, "a.svc.test.", p.set[0].Metadata["srv_target"])
	assert.Equal(t, 5, p.set[1].Weight)

	dns.Fail("a.svc.test", dnstest.RcodeNXDomain)
	p = next(t, ch)
	assert.ErrorIs(t, p.err, discovery.ErrNotFound)
	assert.Contains(t, p.err.Error(), "a.svc.test")
	dns.Fail("a.svc.test", dnstest.RcodeServFail)
	p = nextWhere(t, ch, func(p push) bool { return !errorIs(p.err, discovery.ErrNotFound) })
	assert.ErrorIs(t, p.err, discovery.ErrLookup)

	dns.Heal("a.svc.test")
	dns.Fail("_grpc._tcp.svc.test", dnstest.RcodeSuccess) // no record: an empty set
	p = nextWhere(t, ch, func(p push) bool { return p.err == nil })
	assert.Empty(t, p.set)
}
