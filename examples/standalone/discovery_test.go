package main

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/internal/dnstest"
)

// srvOf returns the SRV records of the test backends, on 127.0.0.1 (the
// A record of h.test), priority 1, weight 1.
func srvOf(t *testing.T, backends ...*checkedBackend) []dnstest.SRV {
	t.Helper()
	var out []dnstest.SRV
	for _, b := range backends {
		u, err := url.Parse(b.URL)
		require.NoError(t, err)
		port, err := strconv.Atoi(u.Port())
		require.NoError(t, err)
		out = append(out, dnstest.SRV{Priority: 1, Weight: 1, Port: uint16(port), Target: "h.test"})
	}
	return out
}

// discoveryFile is a config file whose backends come from the SRV records
// of name on dns.
func discoveryFile(dns *dnstest.Server, name string) string {
	return fmt.Sprintf(`{
		"strategy": "rr",
		"discovery": {"kind": "srv", "name": %q, "resolver": %q, "refresh": "50ms", "min_ttl": "50ms"},
		"health": {"passive": {"max_fails": -1}}
	}`, name, dns.Addr)
}

func poolURLs(p *lb.Pool) []string {
	var out []string
	for _, b := range p.Backends() {
		out = append(out, b.Key())
	}
	slices.Sort(out)
	return out
}

func sortedURLs(bs ...*checkedBackend) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.URL)
	}
	slices.Sort(out)
	return out
}

// The proxy's pool follows the SRV records of its discovery source. A
// reload to another source replaces the watcher and keeps the state of the
// backends that stay; a reload to the same source keeps the watcher; a
// reload to a "backends" list stops discovery.
func TestDiscoveryFollowsDNSAndReloads(t *testing.T) {
	a, b, c, d := newCheckedBackend(t, "a"), newCheckedBackend(t, "b"), newCheckedBackend(t, "c"), newCheckedBackend(t, "d")
	dns := dnstest.Start(t)
	dns.SetAddrs("h.test", 300, "127.0.0.1")
	dns.SetSRV("_http._tcp.one.test", 300, srvOf(t, a, b)...)
	dns.SetSRV("_http._tcp.two.test", 300, srvOf(t, b, d)...)
	path := writeConfig(t, discoveryFile(dns, "_http._tcp.one.test"))
	r := start(t, "-config", path)
	pool := r.p.bal.Pool()
	require.Equal(t, sortedURLs(a, b), poolURLs(pool), "the first set is in before the proxy serves")
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	assert.Equal(t, map[string]int{"a": 2, "b": 2}, spread(t, client, r.url, 4))
	assert.Len(t, r.logs.lines("tinylb listening", "discovery=\"srv _http._tcp.one.test.\"", "discovered=2"), 1)

	// The records change: the pool follows.
	dns.SetSRV("_http._tcp.one.test", 300, srvOf(t, b, c)...)
	waitFor(t, "c discovered", func() bool { return slices.Equal(poolURLs(pool), sortedURLs(b, c)) })
	beB, _ := pool.Get(b.URL)
	reqsB := backendStats(t, r.p.bal, b.URL).Requests
	require.NotZero(t, reqsB)

	// Reloading the same file keeps the watcher.
	w := r.p.watcher
	require.NoError(t, r.p.Reload())
	assert.Same(t, w, r.p.watcher)

	// Another source: b stays with its state, c goes, d comes.
	rewrite(t, path, discoveryFile(dns, "_http._tcp.two.test"))
	require.NoError(t, r.p.Reload())
	assert.NotSame(t, w, r.p.watcher)
	waitFor(t, "d discovered", func() bool { return slices.Equal(poolURLs(pool), sortedURLs(b, d)) })
	be, _ := pool.Get(b.URL)
	assert.Same(t, beB, be, "b keeps its lb.Backend over the reload")
	assert.Equal(t, reqsB, backendStats(t, r.p.bal, b.URL).Requests)
	assert.Empty(t, r.logs.lines("needs restart"), "a discovery change needs no restart")
	assert.Len(t, r.logs.lines("config reloaded", "discovery=\"srv _http._tcp.two.test.\""), 1)

	// The old source no longer moves the pool.
	dns.SetSRV("_http._tcp.one.test", 300, srvOf(t, a)...)
	dns.SetSRV("_http._tcp.two.test", 300, srvOf(t, d)...)
	waitFor(t, "b gone", func() bool { return slices.Equal(poolURLs(pool), sortedURLs(d)) })

	// A list of backends: discovery stops.
	rewrite(t, path, reloadConfig("rr", "1s", "info", backendsJSON(a.URL, d.URL)))
	require.NoError(t, r.p.Reload())
	assert.Nil(t, r.p.watcher)
	assert.Equal(t, sortedURLs(a, d), poolURLs(pool))
	dns.SetSRV("_http._tcp.two.test", 300, srvOf(t, c)...)
	time.Sleep(200 * time.Millisecond) // four refreshes of the stopped source
	assert.Equal(t, sortedURLs(a, d), poolURLs(pool))
}

// A lookup that fails keeps the backends; the error is logged.
func TestDiscoveryKeepsBackendsOnDNSFailure(t *testing.T) {
	a := newCheckedBackend(t, "a")
	dns := dnstest.Start(t)
	dns.SetAddrs("h.test", 300, "127.0.0.1")
	dns.SetSRV("_http._tcp.one.test", 300, srvOf(t, a)...)
	r := start(t, "-config", writeConfig(t, discoveryFile(dns, "_http._tcp.one.test")))
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	dns.Fail("_http._tcp.one.test", dnstest.RcodeServFail)
	waitFor(t, "the failure logged", func() bool { return len(r.logs.lines("level=WARN", "discovery source error", "DNS lookup failed")) > 0 })
	assert.Equal(t, map[string]int{"a": 3}, spread(t, client, r.url, 3))
	dns.Fail("_http._tcp.one.test", dnstest.RcodeNXDomain)
	waitFor(t, "NXDOMAIN logged", func() bool { return len(r.logs.lines("level=WARN", "no such DNS name")) > 0 })
	assert.Equal(t, map[string]int{"a": 3}, spread(t, client, r.url, 3))
}

// The discovery object is checked field by field, and excludes a
// "backends" list; -backend replaces it.
func TestDiscoveryConfigErrors(t *testing.T) {
	const be = `"backends": [{"url": "http://127.0.0.1:9001"}]`
	for _, c := range []struct{ disc, want string }{
		{`{"kind": "dns", "name": "api.test", "port": 80}, ` + be, `backends: "backends" and "discovery" exclude each other`},
		{`{"name": "api.test"}`, `discovery.kind: missing: want dns, etcd or srv`},
		{`{"kind": "consul"}`, `discovery.kind: "consul": unknown kind: want dns, etcd or srv`},
		{`{"kind": "dns", "port": 80}`, `discovery.name: "": want a DNS name`},
		{`{"kind": "dns", "name": "api.test"}`, `discovery.port: 0: must be between 1 and 65535`},
		{`{"kind": "dns", "name": "api.test", "port": 70000}`, `discovery.port: 70000: must be between 1 and 65535`},
		{`{"kind": "srv", "name": "api.test", "port": 80}`, `discovery.port: 80: SRV records carry their ports`},
		{`{"kind": "srv", "name": "api.test", "service": "http"}`, `discovery.service: "http": give both service and proto`},
		{`{"kind": "dns", "name": "api.test", "port": 80, "service": "http"}`, `discovery.service: "http": only used with kind srv`},
		{`{"kind": "dns", "name": "api.test", "port": 80, "scheme": "ftp"}`, `discovery.scheme: "ftp": want http or https`},
		{`{"kind": "dns", "name": "api.test", "port": 80, "refresh": "-1s"}`, `discovery.refresh: "-1s": must not be negative (0 is the default, 30s)`},
		{`{"kind": "dns", "name": "api.test", "port": 80, "refresh": "5"}`, `discovery.refresh: "5": invalid duration`},
		{`{"kind": "dns", "name": "api.test", "port": 80, "resolver": "10.0.0.2"}`, `discovery.resolver: "10.0.0.2": want host:port`},
		{`{"kind": "dns", "name": "a b", "port": 80}`, `discovery: dns a b:80: want a DNS name`},
		{`{"kind": "dns", "name": "api.test", "port": 80, "ttl": "5s"}`, `discovery.ttl: unknown field (want kind, name, service, proto, port, scheme, refresh, min_ttl, resolver, allow_empty, endpoints, prefix, dial_timeout, request_timeout, username or password_env)`},
	} {
		path := writeConfig(t, `{"discovery": `+c.disc+`}`)
		_, err := load([]string{"-config", path})
		if assert.Error(t, err, c.disc) {
			assert.Contains(t, err.Error(), path+": "+c.want)
		}
	}

	// -backend replaces the file's discovery, as it replaces its list.
	path := writeConfig(t, `{"discovery": {"kind": "dns", "name": "api.test", "port": 80}}`)
	cfg, err := load([]string{"-config", path, "-backend", "http://127.0.0.1:9001"})
	require.NoError(t, err)
	assert.Nil(t, cfg.Discovery)
	assert.Len(t, cfg.Backends, 1)
	cfg, err = load([]string{"-config", path})
	require.NoError(t, err)
	assert.Equal(t, &discoveryConfig{Kind: "dns", Name: "api.test", Port: 80}, cfg.Discovery)
	buildAndClose(t, cfg)
}

// The example file of discovery loads and builds.
func TestDiscoveryExampleFile(t *testing.T) {
	cfg, err := load([]string{"-config", "lb.srv.example.json"})
	require.NoError(t, err)
	assert.Equal(t, &discoveryConfig{
		Kind: "srv", Name: "_http._tcp.api.internal", Scheme: "http",
		Refresh: duration(30 * time.Second), MinTTL: duration(time.Second), Resolver: "10.0.0.2:53",
	}, cfg.Discovery)
	assert.Empty(t, cfg.Backends)
	buildAndClose(t, cfg)
}
