package etcd_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tinylb/lb/discovery"
	"github.com/tinylb/lb/discovery/etcd"
)

const (
	urlA = "http://127.0.0.1:10001"
	urlB = "http://127.0.0.1:10002"
	urlC = "http://127.0.0.1:10003"
)

// TestInitialSet: the keys under the prefix, bare URLs and JSON alike, are
// pushed in key order; keys that only share the prefix's letters
// ("/svc/api2/") or lie elsewhere are not.
func TestInitialSet(t *testing.T) {
	s := startServer(t)
	c := newClient(t, s.endpoint())
	put(t, c, "/svc/api/b", `{"url": "`+urlB+`", "weight": 3, "backup": true, "zone": "z1", "metadata": {"v": "2"}}`)
	put(t, c, "/svc/api/a", urlA)
	put(t, c, "/svc/api/c", ` {"url":"`+urlC+`","draining":true} `)
	put(t, c, "/svc/api2/x", "http://127.0.0.1:10009")
	put(t, c, "/other", "http://127.0.0.1:10010")

	rec := runSource(t, etcd.New(c, "/svc/api/"))
	n := rec.waitSet(t, 0, urlA, urlB, urlC)
	first := rec.pushes()[n-1].set
	assert.Equal(t, []discovery.Target{
		{URL: urlA},
		{URL: urlB, Weight: 3, Backup: true, Zone: "z1", Metadata: map[string]string{"v": "2"}},
		{URL: urlC, Draining: true},
	}, first)
	assert.Equal(t, 1, n, "the first push is the whole set")
}

// TestEmptyPrefix: a prefix with no keys is pushed as an empty set (the
// truth), and a key added later is seen.
func TestEmptyPrefix(t *testing.T) {
	s := startServer(t)
	c := newClient(t, s.endpoint())
	rec := runSource(t, etcd.New(c, "/svc/api/"))
	n := rec.waitFor(t, 0, "an empty set", func(p pushed) bool { return p.err == nil && len(p.set) == 0 })
	put(t, c, "/svc/api/a", urlA)
	rec.waitSet(t, n, urlA)
}

// TestChanges: adding, modifying and deleting keys each push the whole new
// set.
func TestChanges(t *testing.T) {
	s := startServer(t)
	c := newClient(t, s.endpoint())
	put(t, c, "/svc/a", urlA)
	rec := runSource(t, etcd.New(c, "/svc/"))
	n := rec.waitSet(t, 0, urlA)

	put(t, c, "/svc/b", urlB)
	n = rec.waitSet(t, n, urlA, urlB)

	put(t, c, "/svc/a", `{"url": "`+urlA+`", "weight": 5}`)
	n = rec.waitFor(t, n, "a at weight 5", func(p pushed) bool {
		return p.err == nil && equalURLs(p.set, []string{urlA, urlB}) && p.set[0].Weight == 5
	})

	put(t, c, "/svc/a", urlC) // the key now names another backend
	n = rec.waitSet(t, n, urlC, urlB)

	del(t, c, "/svc/b")
	n = rec.waitSet(t, n, urlC)

	del(t, c, "/svc/a")
	rec.waitFor(t, n, "an empty set", func(p pushed) bool { return p.err == nil && len(p.set) == 0 })
	for _, p := range rec.pushes() {
		assert.NoError(t, p.err)
	}
}

// TestBadValuesSkipped: a key whose value is not a backend is logged and
// left out, the others are still pushed; a good key turned bad leaves the
// set, a bad one fixed joins it; of two keys naming one backend the first
// in key order counts, and the second takes over when the first goes.
func TestBadValuesSkipped(t *testing.T) {
	s := startServer(t)
	c := newClient(t, s.endpoint())
	put(t, c, "/svc/a", urlA)
	put(t, c, "/svc/bad1", "not a url")
	put(t, c, "/svc/bad2", `{"url": "`+urlB+`", "wieght": 2}`)
	put(t, c, "/svc/bad3", `{"url": "`+urlB+`", "weight": -1}`)
	put(t, c, "/svc/bad4", `{"url": "`+urlB+`"`)
	put(t, c, "/svc/bad5", "")

	l := &logs{}
	rec := runSource(t, etcd.New(c, "/svc/", etcd.WithLogger(slogLogger(l))))
	n := rec.waitSet(t, 0, urlA)
	skipped := map[string]bool{}
	for _, r := range l.find("etcd: skipping key") {
		skipped[r["key"]] = true
		assert.Contains(t, r["error"], "etcd: bad value")
	}
	assert.Equal(t, map[string]bool{"/svc/bad1": true, "/svc/bad2": true, "/svc/bad3": true, "/svc/bad4": true, "/svc/bad5": true}, skipped)

	put(t, c, "/svc/bad1", urlB) // fixed
	n = rec.waitSet(t, n, urlA, urlB)
	put(t, c, "/svc/a", "ftp://127.0.0.1:21") // broken
	n = rec.waitSet(t, n, urlB)
	assert.Len(t, l.find("etcd: skipping key"), 6)

	// /svc/c names the backend of /svc/bad1 (spelt otherwise): skipped
	// while /svc/bad1 holds it.
	put(t, c, "/svc/c", "http://127.0.0.1:10002/")
	require.Eventually(t, func() bool {
		return len(l.find("etcd: key names the same backend as another; the first in key order is used")) == 1
	},
		10*time.Second, 5*time.Millisecond)
	assert.Equal(t, []string{urlB}, urls(rec.pushes()[len(rec.pushes())-1].set))
	del(t, c, "/svc/bad1")
	rec.waitSet(t, n, "http://127.0.0.1:10002/")
	for _, p := range rec.pushes() {
		assert.NoError(t, p.err, "a bad key is logged, not pushed as an error")
	}
}

// TestClientClosed: Run returns ErrClientClosed when its client is closed
// under it.
func TestClientClosed(t *testing.T) {
	s := startServer(t)
	c := newClient(t, s.endpoint())
	put(t, c, "/svc/a", urlA)
	rec := &recorder{}
	done := make(chan error, 1)
	go func() { done <- etcd.New(c, "/svc/").Run(context.Background(), rec.push) }()
	rec.waitSet(t, 0, urlA)
	require.NoError(t, c.Close())
	select {
	case err := <-done:
		require.ErrorIs(t, err, etcd.ErrClientClosed)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return 10 s after its client was closed")
	}
}

// TestNoClient: a source without a client says so instead of panicking.
func TestNoClient(t *testing.T) {
	err := etcd.New(nil, "/svc/").Run(context.Background(), func([]discovery.Target, error) {
		t.Error("push called")
	})
	require.ErrorIs(t, err, etcd.ErrNoClient)
}
