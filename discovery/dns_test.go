package discovery_test

import (
	"context"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/discovery"
	"github.com/tinylb/lb/internal/dnstest"
)

// portOf returns the port of an httptest server's URL.
func portOf(t *testing.T, rawURL string) int {
	u, err := url.Parse(rawURL)
	require.NoError(t, err)
	p, err := strconv.Atoi(u.Port())
	require.NoError(t, err)
	return p
}

// collect runs src and returns what it pushes.
func collect(t *testing.T, src discovery.Source) <-chan push {
	ch := make(chan push, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		src.Run(ctx, func(set []discovery.Target, err error) {
			select {
			case ch <- push{set, err}:
			case <-ctx.Done():
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return ch
}

func next(t *testing.T, ch <-chan push) push {
	t.Helper()
	select {
	case p := <-ch:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("the source pushed nothing")
		return push{}
	}
}

// nextWhere returns the first push that satisfies cond, failing the test
// after 10s.
func nextWhere(t *testing.T, ch <-chan push, cond func(push) bool) push {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case p := <-ch:
			if cond(p) {
				return p
			}
		case <-deadline:
			t.Fatal("the source pushed nothing of the kind")
			return push{}
		}
	}
}

func urlsOf(set []discovery.Target) []string {
	out := make([]string, len(set))
	for i, t := range set {
		out[i] = t.URL
	}
	return out
}

// The A and AAAA records become one target per address, sorted, with the
// scheme asked for. The addresses other than 127.0.0.1 are documentation
// addresses (RFC 5737, RFC 3849): nothing dials them.
func TestDNSSourceAddresses(t *testing.T) {
	dns := dnstest.Start(t)
	dns.SetAddrs("svc.test", 30, "192.0.2.2", "2001:db8::1", "192.0.2.1")
	ch := collect(t, discovery.DNS("svc.test", 8443, discovery.WithScheme("https"), discovery.WithResolverAddr(dns.Addr)))
	p := next(t, ch)
	require.NoError(t, p.err)
	assert.Equal(t, []string{"https://192.0.2.1:8443", "https://192.0.2.2:8443", "https://[2001:db8::1]:8443"}, urlsOf(p.set))
	for _, tg := range p.set {
		assert.Equal(t, 1, tg.Weight)
		assert.False(t, tg.Backup)
	}
}

// dnsWatch is a watcher over pool fed by the A records of name.
func dnsWatch(t *testing.T, dns *dnstest.Server, name string, port int, pool *lb.Pool, evs *eventLog, opts ...discovery.DNSOption) *discovery.Watcher {
	t.Helper()
	opts = append([]discovery.DNSOption{discovery.WithResolverAddr(dns.Addr), discovery.WithRefresh(50 * time.Millisecond),
		discovery.WithMinTTL(50 * time.Millisecond), discovery.WithJitter(0)}, opts...)
	src := discovery.DNS(name, port, opts...)
	require.NoError(t, src.Validate())
	w := watch(t, src, pool, discovery.WithEvents(evs.add), discovery.WithDebounce(0))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, w.WaitReady(ctx))
	return w
}

// The pool follows a changing answer; the member that stays keeps its
// lb.Backend and its counters.
func TestDNSSourceChangingAnswer(t *testing.T) {
	a := newServer(t, "a")
	port := portOf(t, a.URL)
	dns := dnstest.Start(t)
	dns.SetAddrs("svc.test", 300, "127.0.0.1")
	pool := &lb.Pool{}
	bal, fr := front(t, pool, lb.RoundRobin())
	var evs eventLog
	dnsWatch(t, dns, "svc.test", port, pool, &evs)
	require.Equal(t, []string{a.URL}, members(pool))
	hc := client(t)
	for range 3 {
		_, body := get(t, hc, fr.URL)
		require.Equal(t, "a", body)
	}
	before, _ := pool.Get(a.URL)

	dns.SetAddrs("svc.test", 300, "127.0.0.1", "192.0.2.7")
	other := "http://192.0.2.7:" + strconv.Itoa(port)
	waitFor(t, "the new address in the pool", func() bool { _, ok := pool.Get(other); return ok })
	after, _ := pool.Get(a.URL)
	assert.Same(t, before, after)
	for _, st := range bal.Stats().Backends {
		if st.URL == a.URL {
			assert.EqualValues(t, 3, st.Requests)
			assert.Equal(t, lb.StateUp, st.State)
		}
	}

	dns.SetAddrs("svc.test", 300, "127.0.0.1")
	waitFor(t, "the address gone", func() bool { return pool.Len() == 1 })
	_, body := get(t, hc, fr.URL)
	assert.Equal(t, "a", body)
}

// SERVFAIL and NXDOMAIN are errors: the pool keeps its last set, the
// errors are reported, and the pool follows again once the name heals.
func TestDNSSourceFailuresKeepSet(t *testing.T) {
	dns := dnstest.Start(t)
	dns.SetAddrs("svc.test", 300, "192.0.2.1")
	pool := &lb.Pool{}
	var evs eventLog
	w := dnsWatch(t, dns, "svc.test", 80, pool, &evs)
	want := []string{"http://192.0.2.1"}
	require.Equal(t, want, members(pool))

	for _, c := range []struct {
		rcode int
		is    error
	}{{dnstest.RcodeServFail, discovery.ErrLookup}, {dnstest.RcodeNXDomain, discovery.ErrNotFound}} {
		errs := w.Stats().Errors
		dns.Fail("svc.test", c.rcode)
		waitFor(t, "errors reported", func() bool { return w.Stats().Errors >= errs+2 })
		st := w.Stats()
		assert.ErrorIs(t, st.LastError, c.is, "rcode %d", c.rcode)
		assert.Equal(t, want, members(pool), "rcode %d: the pool keeps its set", c.rcode)
		dns.Heal("svc.test")
	}
	dns.SetAddrs("svc.test", 300, "192.0.2.2")
	waitFor(t, "the pool follows again", func() bool { _, ok := pool.Get("http://192.0.2.2"); return ok && pool.Len() == 1 })
	assert.NotEmpty(t, evs.of(discovery.EventSourceError))
}

// An empty answer (NOERROR, no record) is an empty set, which the watcher
// ignores by default.
func TestDNSSourceEmptyAnswer(t *testing.T) {
	dns := dnstest.Start(t)
	dns.SetAddrs("svc.test", 300, "192.0.2.1")
	pool := &lb.Pool{}
	var evs eventLog
	w := dnsWatch(t, dns, "svc.test", 80, pool, &evs)
	dns.Fail("svc.test", dnstest.RcodeSuccess)
	waitFor(t, "the empty set ignored", func() bool { return w.Stats().Ignored >= 1 })
	assert.Equal(t, []string{"http://192.0.2.1"}, members(pool))
	assert.Zero(t, w.Stats().Errors, "an empty answer is no error")
	ign := evs.of(discovery.EventIgnored)
	require.NotEmpty(t, ign)
	assert.ErrorIs(t, ign[0].Err, discovery.ErrEmptySet)

	// With WithAllowEmpty the same answer empties the pool.
	pool2 := &lb.Pool{}
	dns.Heal("svc.test")
	dns.SetAddrs("two.test", 300, "192.0.2.1")
	src := discovery.DNS("two.test", 80, discovery.WithResolverAddr(dns.Addr), discovery.WithRefresh(50*time.Millisecond), discovery.WithMinTTL(50*time.Millisecond))
	w2 := watch(t, src, pool2, discovery.WithAllowEmpty(), discovery.WithDebounce(0))
	require.NoError(t, w2.WaitReady(context.Background()))
	dns.Fail("two.test", dnstest.RcodeSuccess)
	waitFor(t, "the pool emptied", func() bool { return pool2.Len() == 0 })
}

// The records' TTL shortens the wait: with a refresh of 10 minutes and a
// TTL of 1 s, a changed answer is seen. The minimum TTL bounds the wait
// below: a TTL of 0 does not make the source query in a loop.
func TestDNSSourceRespectsTTL(t *testing.T) {
	dns := dnstest.Start(t)
	dns.SetAddrs("svc.test", 1, "192.0.2.1")
	pool := &lb.Pool{}
	var evs eventLog
	dnsWatch(t, dns, "svc.test", 80, pool, &evs, discovery.WithRefresh(10*time.Minute), discovery.WithMinTTL(time.Second))
	dns.SetAddrs("svc.test", 1, "192.0.2.2")
	waitFor(t, "the change seen after the TTL", func() bool { _, ok := pool.Get("http://192.0.2.2"); return ok })

	dns.SetAddrs("zero.test", 0, "192.0.2.1")
	ch := collect(t, discovery.DNS("zero.test", 80, discovery.WithResolverAddr(dns.Addr), discovery.WithMinTTL(time.Second)))
	require.NoError(t, next(t, ch).err)
	time.Sleep(300 * time.Millisecond)
	assert.LessOrEqual(t, dns.Queries("zero.test", dnstest.TypeA), 2, "TTL 0 waits the minimum TTL, not 0")

	// And the refresh interval bounds a long TTL.
	dns.SetAddrs("long.test", 3600, "192.0.2.1")
	pool2 := &lb.Pool{}
	dnsWatch(t, dns, "long.test", 80, pool2, &evs)
	dns.SetAddrs("long.test", 3600, "192.0.2.3")
	waitFor(t, "the change seen after the refresh", func() bool { _, ok := pool2.Get("http://192.0.2.3"); return ok })
}

// Settings that cannot work are refused by Validate and by Run.
func TestDNSSourceValidate(t *testing.T) {
	for _, src := range []*discovery.DNSSource{
		discovery.DNS("", 80),
		discovery.DNS("a b", 80),
		discovery.DNS("svc.test", 0),
		discovery.DNS("svc.test", 70000),
		discovery.DNS("svc.test", 80, discovery.WithScheme("ftp")),
		discovery.DNS("svc.test", 80, discovery.WithRefresh(0)),
		discovery.DNS("svc.test", 80, discovery.WithMinTTL(-time.Second)),
		discovery.DNS("svc.test", 80, discovery.WithJitter(0.9)),
		discovery.DNS("svc.test", 80, discovery.WithResolverAddr("10.0.0.1")),
		discovery.SRV("http", "", "svc.test"),
		discovery.SRV("", "", "."),
	} {
		err := src.Validate()
		assert.ErrorIs(t, err, discovery.ErrInvalidSource, "%s", src)
		assert.ErrorIs(t, src.Run(context.Background(), func([]discovery.Target, error) { t.Error("pushed") }), discovery.ErrInvalidSource)
	}
	assert.NoError(t, discovery.DNS("svc.test.", 80, discovery.WithScheme("https"), discovery.WithResolverAddr("127.0.0.1:53")).Validate())
	assert.NoError(t, discovery.SRV("http", "tcp", "svc.test").Validate())
	assert.NoError(t, discovery.SRV("", "", "_http._tcp.svc.test").Validate())
}

// Over TCP too (after a truncated UDP answer), the source reads the TTL:
// with a refresh of 10 minutes and a TTL of 1 s, a change is seen.
func TestDNSSourceReadsTTLOverTCP(t *testing.T) {
	dns := dnstest.Start(t)
	dns.SetAddrs("svc.test", 1, "192.0.2.1")
	dns.Truncate("svc.test", true)
	pool := &lb.Pool{}
	var evs eventLog
	dnsWatch(t, dns, "svc.test", 80, pool, &evs, discovery.WithRefresh(10*time.Minute), discovery.WithMinTTL(time.Second))
	require.Equal(t, []string{"http://192.0.2.1"}, members(pool))
	dns.SetAddrs("svc.test", 1, "192.0.2.2")
	waitFor(t, "the change seen after the TTL", func() bool { _, ok := pool.Get("http://192.0.2.2"); return ok })
}
