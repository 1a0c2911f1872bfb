package etcd_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/tinylb/lb/discovery/etcd"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// failingWatcher wraps a client's real Watcher. Its first watch ends with
// a canceled response (as one ended by the server does, say with "no
// leader") when fail is closed; its later watches open only once hold is
// closed. It records the revision each watch starts from.
type failingWatcher struct {
	clientv3.Watcher
	fail chan struct{}
	hold chan struct{}

	mu   sync.Mutex
	revs []int64
	wg   sync.WaitGroup // the forwarders
}

func (w *failingWatcher) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	w.mu.Lock()
	w.revs = append(w.revs, clientv3.OpGet(key, opts...).Rev())
	first := len(w.revs) == 1
	w.mu.Unlock()
	if !first {
		select {
		case <-w.hold:
		case <-ctx.Done():
		}
		return w.Watcher.Watch(ctx, key, opts...)
	}
	real := w.Watcher.Watch(ctx, key, opts...)
	out := make(chan clientv3.WatchResponse)
	w.wg.Go(func() {
		defer close(out)
		for {
			select {
			case resp, ok := <-real:
				if !ok {
					return
				}
				select {
				case out <- resp:
				case <-ctx.Done():
					return
				}
			case <-w.fail:
				select {
				case out <- clientv3.WatchResponse{Canceled: true, CancelReason: "injected failure"}:
				case <-ctx.Done():
				}
				return
			}
		}
	})
	return out
}

func (w *failingWatcher) startRevs() []int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]int64(nil), w.revs...)
}

// TestWatchFailsAndResumes: when the watch channel ends with an error the
// source pushes the error, waits, and watches again from the revision
// after the last one it saw, so the changes made before the new watch
// opened reach it (a watch from the current revision would miss them);
// the set is never pushed empty.
func TestWatchFailsAndResumes(t *testing.T) {
	s := startServer(t)
	c := newClient(t, s.endpoint())
	fw := &failingWatcher{Watcher: c.Watcher, fail: make(chan struct{}), hold: make(chan struct{})}
	c.Watcher = fw
	t.Cleanup(fw.wg.Wait)
	readRev := put(t, c, "/svc/a", urlA)

	rec := runSource(t, etcd.New(c, "/svc/", etcd.WithBackoff(20*time.Millisecond, 100*time.Millisecond)))
	n := rec.waitSet(t, 0, urlA)
	lastRev := put(t, c, "/svc/b", urlB)
	n = rec.waitSet(t, n, urlA, urlB)

	close(fw.fail)
	n = rec.waitFor(t, n, "the watch's error", func(p pushed) bool {
		return p.err != nil && assert.ErrorContains(t, p.err, "injected failure")
	})
	put(t, c, "/svc/c", urlC)
	del(t, c, "/svc/a")
	close(fw.hold)
	rec.waitSet(t, n, urlB, urlC)

	assert.Equal(t, []int64{readRev + 1, lastRev + 1}, fw.startRevs())
	rec.noEmptySet(t)
}
