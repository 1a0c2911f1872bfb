package etcd_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tinylb/lb/discovery/etcd"
)

const compactedMsg = "etcd: history compacted past the watch, reading the prefix again"

// TestServerRestart: etcd is closed (gracefully, as on a restart, with the
// source's watch open) and started again on the same ports and data
// directory. The source pushes ErrDisconnected, never an empty set, and
// resumes from the last revision it saw: the changes made after the
// restart but before it could reconnect (the proxy in front of it is cut
// meanwhile) reach it, which a watch started afresh at the current
// revision would miss.
func TestServerRestart(t *testing.T) {
	s := startServer(t)
	direct := newClient(t, s.endpoint())
	px := startProxy(t, s.endpoint())
	c := newClient(t, px.addr)
	put(t, direct, "/svc/a", urlA)
	put(t, direct, "/svc/b", urlB)

	l := &logs{}
	rec := runSource(t, etcd.New(c, "/svc/", etcd.WithLogger(slogLogger(l)), etcd.WithBackoff(20*time.Millisecond, 200*time.Millisecond)))
	n := rec.waitSet(t, 0, urlA, urlB)

	s.stop()
	n = rec.waitErr(t, n, etcd.ErrDisconnected)
	px.cut()
	s.start()
	put(t, direct, "/svc/c", urlC)
	del(t, direct, "/svc/a")
	px.resume()

	rec.waitSet(t, n, urlB, urlC)
	rec.noEmptySet(t)
	assert.Empty(t, l.find(compactedMsg), "the watch resumed; it did not need a fresh read")
}

// TestCompactedWhileDisconnected: while the source is cut off from etcd,
// keys change many times and the history is compacted past the source's
// last revision. Resuming from that revision fails with ErrCompacted; the
// source reads the whole prefix again and pushes the current set, never
// an empty one.
func TestCompactedWhileDisconnected(t *testing.T) {
	s := startServer(t)
	direct := newClient(t, s.endpoint())
	px := startProxy(t, s.endpoint())
	c := newClient(t, px.addr)
	seen := put(t, direct, "/svc/a", urlA)

	l := &logs{}
	rec := runSource(t, etcd.New(c, "/svc/", etcd.WithLogger(slogLogger(l)), etcd.WithBackoff(20*time.Millisecond, 200*time.Millisecond)))
	n := rec.waitSet(t, 0, urlA)

	px.cut()
	n = rec.waitErr(t, n, etcd.ErrDisconnected)
	for i := range 20 {
		put(t, direct, "/svc/b", `{"url": "`+urlB+`", "weight": `+itoa(i+1)+`}`)
	}
	del(t, direct, "/svc/a")
	last := put(t, direct, "/svc/c", urlC)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := direct.Compact(ctx, last)
	require.NoError(t, err)
	require.Greater(t, last, seen+1, "the source's next revision is compacted")
	px.resume()

	n = rec.waitFor(t, n, "b at weight 20 and c", func(p pushed) bool {
		return p.err == nil && equalURLs(p.set, []string{urlB, urlC}) && p.set[0].Weight == 20
	})
	compacted := l.find(compactedMsg)
	require.Len(t, compacted, 1)
	assert.Equal(t, itoa(int(seen)), compacted[0]["revision"])
	rec.noEmptySet(t)

	// The source watches on from the read's revision.
	put(t, direct, "/svc/a", urlA)
	rec.waitSet(t, n, urlA, urlB, urlC)
}

// TestReadFailsThenRecovers: when the first read of the prefix times out
// the source pushes the error and tries again, and pushes the set once
// etcd answers.
func TestReadFailsThenRecovers(t *testing.T) {
	s := startServer(t)
	direct := newClient(t, s.endpoint())
	px := startProxy(t, s.endpoint())
	c := newClient(t, px.addr)
	put(t, direct, "/svc/a", urlA)
	px.cut()

	rec := runSource(t, etcd.New(c, "/svc/", etcd.WithRequestTimeout(200*time.Millisecond), etcd.WithBackoff(20*time.Millisecond, 100*time.Millisecond)))
	n := rec.waitFor(t, 0, "a read error", func(p pushed) bool {
		return p.err != nil && p.set == nil && assert.ErrorContains(t, p.err, `etcd: read prefix "/svc/"`)
	})
	put(t, direct, "/svc/b", urlB)
	px.resume()
	rec.waitSet(t, n, urlA, urlB)
	rec.noEmptySet(t)
}
