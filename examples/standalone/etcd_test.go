package main

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// etcdFile is a config file whose backends are the keys under prefix in
// the etcd at endpoint; extra is more fields of the discovery object.
func etcdFile(endpoint, prefix, extra string) string {
	return fmt.Sprintf(`{
		"strategy": "rr",
		"discovery": {"kind": "etcd", "endpoints": [%q], "prefix": %q%s},
		"health": {"passive": {"max_fails": -1}}
	}`, endpoint, prefix, extra)
}

// The proxy's pool follows the keys under the etcd prefix: the first set
// is in before it serves, a key added or removed is followed, a reload to
// another prefix replaces the watcher (and its etcd client) and brings the
// new set, and a reload to a "backends" list stops discovery. goleak, in
// TestMain, fails the run if a replaced watcher's client is left open.
func TestEtcdDiscoveryFollowsKeysAndReloads(t *testing.T) {
	a, b, c, d := newCheckedBackend(t, "a"), newCheckedBackend(t, "b"), newCheckedBackend(t, "c"), newCheckedBackend(t, "d")
	etcd := startEtcd(t)
	etcd.put(t, "/svc/one/a", a.URL)
	etcd.put(t, "/svc/one/b", `{"url": "`+b.URL+`", "weight": 1}`)
	etcd.put(t, "/svc/one2/x", c.URL) // not under /svc/one/
	etcd.put(t, "/svc/two/c", c.URL)
	etcd.put(t, "/svc/two/d", d.URL)
	path := writeConfig(t, etcdFile(etcd.endpoint, "/svc/one/", ""))
	r := start(t, "-config", path)
	pool := r.p.bal.Pool()
	require.Equal(t, sortedURLs(a, b), poolURLs(pool), "the first set is in before the proxy serves")
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	assert.Equal(t, map[string]int{"a": 2, "b": 2}, spread(t, client, r.url, 4))
	assert.Len(t, r.logs.lines("tinylb listening", `discovery="etcd prefix \"/svc/one/\" at `+etcd.endpoint+`"`, "discovered=2"), 1)

	// A key added, one removed: the pool follows.
	etcd.put(t, "/svc/one/c", c.URL)
	waitFor(t, "c discovered", func() bool { return slices.Equal(poolURLs(pool), sortedURLs(a, b, c)) })
	etcd.del(t, "/svc/one/a")
	waitFor(t, "a gone", func() bool { return slices.Equal(poolURLs(pool), sortedURLs(b, c)) })
	assert.Equal(t, map[string]int{"b": 2, "c": 2}, spread(t, client, r.url, 4))

	// Reloading the same file keeps the watcher.
	w := r.p.watcher
	require.NoError(t, r.p.Reload())
	assert.Same(t, w, r.p.watcher)

	// Another prefix: its set replaces the old one.
	rewrite(t, path, etcdFile(etcd.endpoint, "/svc/two/", ""))
	require.NoError(t, r.p.Reload())
	assert.NotSame(t, w, r.p.watcher)
	waitFor(t, "the set of /svc/two/", func() bool { return slices.Equal(poolURLs(pool), sortedURLs(c, d)) })
	assert.Equal(t, map[string]int{"c": 2, "d": 2}, spread(t, client, r.url, 4))
	assert.Empty(t, r.logs.lines("needs restart"), "a discovery change needs no restart")

	// The old prefix no longer moves the pool.
	etcd.put(t, "/svc/one/a", a.URL)
	etcd.del(t, "/svc/two/c")
	waitFor(t, "c gone", func() bool { return slices.Equal(poolURLs(pool), sortedURLs(d)) })

	// A list of backends: discovery stops.
	rewrite(t, path, reloadConfig("rr", "1s", "info", backendsJSON(a.URL, b.URL)))
	require.NoError(t, r.p.Reload())
	assert.Nil(t, r.p.watcher)
	assert.Equal(t, sortedURLs(a, b), poolURLs(pool))
}

// With username and password_env the proxy logs in to an etcd that has
// authentication on; the password comes from the environment, never the
// file. A reload with a new password reconnects: a wrong one is logged and
// keeps the pool's backends, the right one again follows the keys.
func TestEtcdDiscoveryAuth(t *testing.T) {
	a, b := newCheckedBackend(t, "a"), newCheckedBackend(t, "b")
	etcd := startEtcd(t)
	etcd.enableAuth(t, "s3cret")
	etcd.put(t, "/svc/api/a", a.URL)
	t.Setenv("TINYLB_TEST_ETCD_PASSWORD", "s3cret")
	path := writeConfig(t, etcdFile(etcd.endpoint, "/svc/api/", `, "username": "root", "password_env": "TINYLB_TEST_ETCD_PASSWORD", "dial_timeout": "2s"`))
	r := start(t, "-config", path)
	pool := r.p.bal.Pool()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	assert.Equal(t, map[string]int{"a": 2}, spread(t, client, r.url, 2))

	t.Setenv("TINYLB_TEST_ETCD_PASSWORD", "wrong")
	require.NoError(t, r.p.Reload())
	waitFor(t, "the failed login logged", func() bool {
		return len(r.logs.lines("level=WARN", "discovery source error", "etcd: connect to "+etcd.endpoint, "authentication failed")) > 0
	})
	etcd.put(t, "/svc/api/b", b.URL)
	assert.Equal(t, map[string]int{"a": 2}, spread(t, client, r.url, 2), "the pool keeps its backends")

	t.Setenv("TINYLB_TEST_ETCD_PASSWORD", "s3cret")
	require.NoError(t, r.p.Reload())
	waitFor(t, "b discovered", func() bool { return slices.Equal(poolURLs(pool), sortedURLs(a, b)) })
	for _, line := range r.logs.lines() {
		assert.NotContains(t, line, "s3cret", "the password is never logged")
	}
}

// The etcd fields of the discovery object are checked one by one, as the
// DNS ones are.
func TestEtcdDiscoveryConfigErrors(t *testing.T) {
	t.Setenv("TINYLB_TEST_EMPTY", "")
	const ep = `"endpoints": ["127.0.0.1:2379"]`
	for _, c := range []struct{ disc, want string }{
		{`{"kind": "etcd", "prefix": "/svc/api/"}`, `discovery.endpoints: missing: want the etcd cluster's client addresses`},
		{`{"kind": "etcd", ` + ep + `}`, `discovery.prefix: missing: want the key prefix of the service, such as "/services/api/"`},
		{`{"kind": "etcd", ` + ep + `, "prefix": "/svc/api"}`, `discovery.prefix: "/svc/api": end it with /: "/svc/api" would also take in the keys of "/svc/api2/"`},
		{`{"kind": "etcd", "endpoints": ["127.0.0.1"], "prefix": "/a/"}`, `discovery.endpoints[0]: "127.0.0.1": want host:port, or an http:// or https:// URL with a port`},
		{`{"kind": "etcd", "endpoints": ["127.0.0.1:2379", "ftp://h:1"], "prefix": "/a/"}`, `discovery.endpoints[1]: "ftp://h:1": want host:port`},
		{`{"kind": "etcd", "endpoints": ["http://h:2379/x"], "prefix": "/a/"}`, `discovery.endpoints[0]: "http://h:2379/x": want host:port`},
		{`{"kind": "etcd", ` + ep + `, "prefix": "/a/", "name": "api.test"}`, `discovery: name, service, proto, port, resolver, refresh and min_ttl are for kinds dns and srv; kind etcd takes endpoints and prefix`},
		{`{"kind": "etcd", ` + ep + `, "prefix": "/a/", "scheme": "https"}`, `discovery.scheme: "https": the values under the prefix are whole URLs: leave scheme out`},
		{`{"kind": "etcd", ` + ep + `, "prefix": "/a/", "dial_timeout": "-1s"}`, `discovery.dial_timeout: "-1s": must not be negative (0 is the default, 5s)`},
		{`{"kind": "etcd", ` + ep + `, "prefix": "/a/", "request_timeout": "-1s"}`, `discovery.request_timeout: "-1s": must not be negative (0 is the default, 5s)`},
		{`{"kind": "etcd", ` + ep + `, "prefix": "/a/", "username": "root"}`, `discovery.password_env: missing: with username, name the environment variable that holds the password`},
		{`{"kind": "etcd", ` + ep + `, "prefix": "/a/", "username": "root", "password_env": "TINYLB_TEST_EMPTY"}`, `discovery.password_env: "TINYLB_TEST_EMPTY": the environment variable TINYLB_TEST_EMPTY is unset or empty`},
		{`{"kind": "etcd", ` + ep + `, "prefix": "/a/", "password_env": "X"}`, `discovery.password_env: "X": only used with username`},
		{`{"kind": "etcd", ` + ep + `, "prefix": "/a/", "password": "p"}`, `discovery.password: unknown field`},
		{`{"kind": "dns", "name": "api.test", "port": 80, "prefix": "/a/"}`, `discovery: endpoints, prefix, dial_timeout, request_timeout, username and password_env are for kind etcd; kind dns takes name`},
		{`{"kind": "kubernetes"}`, `discovery.kind: "kubernetes": this build has no kubernetes support`},
		{`{"kind": "consul"}`, `discovery.kind: "consul": unknown kind: want dns, etcd or srv`},
	} {
		path := writeConfig(t, `{"discovery": `+c.disc+`}`)
		_, err := load([]string{"-config", path})
		if assert.Error(t, err, c.disc) {
			assert.Contains(t, err.Error(), path+": "+c.want)
		}
	}

	// A good object loads and builds; building connects to nothing.
	path := writeConfig(t, `{"discovery": {"kind": "etcd", "endpoints": ["127.0.0.1:2379", "https://etcd.test:2379"], "prefix": "/svc/api/", "dial_timeout": "1s"}}`)
	cfg, err := load([]string{"-config", path})
	require.NoError(t, err)
	assert.Equal(t, &discoveryConfig{Kind: "etcd", Endpoints: []string{"127.0.0.1:2379", "https://etcd.test:2379"}, Prefix: "/svc/api/", DialTimeout: duration(time.Second)}, cfg.Discovery)
	assert.True(t, strings.HasPrefix(cfg.Discovery.String(), `etcd prefix "/svc/api/" at 127.0.0.1:2379,https://etcd.test:2379`))
	buildAndClose(t, cfg)
}
