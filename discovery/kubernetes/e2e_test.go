package kubernetes_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/discovery"
)

// applier keeps a pool in step with the sets a source pushes: Update with
// the whole set, then Drain (in the background, as it waits for the
// requests in flight) the targets that turned Draining. It stands in for
// the discovery package's watcher in this test.
type applier struct {
	t        *testing.T
	pool     *lb.Pool
	ctx      context.Context
	wg       sync.WaitGroup
	draining map[string]bool
	applied  chan []discovery.Target
}

func (a *applier) push(set []discovery.Target, err error) {
	if err != nil {
		a.t.Errorf("source error: %v", err)
		return
	}
	backends := make([]*lb.Backend, 0, len(set))
	for _, tg := range set {
		var opts []lb.BackendOption
		if tg.Weight > 0 {
			opts = append(opts, lb.WithWeight(tg.Weight))
		}
		if tg.Backup {
			opts = append(opts, lb.AsBackup())
		}
		b, err := lb.NewBackend(tg.URL, opts...)
		if err != nil {
			a.t.Errorf("target %s: %v", tg.URL, err)
			return
		}
		backends = append(backends, b)
	}
	if err := a.pool.Update(backends...); err != nil {
		a.t.Errorf("Update: %v", err)
		return
	}
	for _, tg := range set {
		switch {
		case tg.Draining && !a.draining[tg.URL]:
			a.draining[tg.URL] = true
			a.wg.Go(func() { _ = a.pool.Drain(a.ctx, tg.URL) })
		case !tg.Draining && a.draining[tg.URL]:
			delete(a.draining, tg.URL)
			if err := a.pool.SetMaintenance(tg.URL, false); err != nil {
				a.t.Errorf("SetMaintenance: %v", err)
			}
		}
	}
	a.applied <- set
}

// nextApplied waits until the applier has applied one more set.
func (a *applier) nextApplied(t *testing.T) []discovery.Target {
	t.Helper()
	select {
	case set := <-a.applied:
		return set
	case <-time.After(10 * time.Second):
		t.Fatal("no set applied within 10 s")
		return nil
	}
}

// backendPort is the port of an httptest server on 127.0.0.1.
func backendPort(t *testing.T, srv *httptest.Server) int32 {
	t.Helper()
	u, err := url.Parse(srv.URL)
	require.NoError(t, err)
	p, err := strconv.Atoi(u.Port())
	require.NoError(t, err)
	return int32(p)
}

// get sends a GET through the front and returns the status and body.
func get(t *testing.T, client *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := client.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// TestEndToEnd runs EndpointSlices → Source → Pool.Update → Balancer →
// httptest backends on 127.0.0.1. One slice per backend, as each slice has
// one port set and each backend listens on a port of its own (a valid
// EndpointSlice layout: the controller makes one slice per distinct port
// set). A terminating endpoint then stops getting new requests while the
// request it holds finishes.
func TestEndToEnd(t *testing.T) {
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var servers []*httptest.Server
	var slices []*discoveryv1.EndpointSlice
	for _, name := range []string{"a", "b", "c"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/hold" && name == "c" {
				entered <- struct{}{}
				<-release
			}
			_, _ = io.WriteString(w, name)
		}))
		t.Cleanup(srv.Close)
		servers = append(servers, srv)
		slices = append(slices, slice("web-"+name, svc,
			[]discoveryv1.EndpointPort{port("http", backendPort(t, srv))}, ready("127.0.0.1")))
	}
	c := fake.NewSimpleClientset()
	for _, sl := range slices {
		create(t, c, sl.DeepCopy())
	}

	pool, err := lb.NewPool()
	require.NoError(t, err)
	bal := lb.New(pool, lb.RoundRobin())
	t.Cleanup(func() { _ = bal.Close() })
	front := httptest.NewServer(bal)
	t.Cleanup(front.Close)
	client := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)

	ctx, cancel := context.WithCancel(context.Background())
	a := &applier{t: t, pool: pool, ctx: ctx, draining: map[string]bool{}, applied: make(chan []discovery.Target, 16)}
	done := make(chan error, 1)
	go func() { done <- newSource(c).Run(ctx, a.push) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
		a.wg.Wait()
	})

	require.Len(t, a.nextApplied(t), 3)
	require.Equal(t, 3, pool.Len())
	seen := map[string]int{}
	for range 30 {
		code, body := get(t, client, front.URL+"/")
		require.Equal(t, http.StatusOK, code)
		seen[body]++
	}
	assert.Equal(t, map[string]int{"a": 10, "b": 10, "c": 10}, seen, "round robin over the three discovered backends")

	// Park one request on c.
	held := make(chan string, 1)
	for i := 0; ; i++ {
		require.Less(t, i, 10, "no /hold request reached c")
		answered := make(chan string, 1)
		go func() {
			resp, err := client.Get(front.URL + "/hold")
			if err != nil {
				answered <- err.Error()
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			answered <- strconv.Itoa(resp.StatusCode) + " " + string(body)
		}()
		select {
		case <-entered:
			go func() { held <- <-answered }()
		case <-answered:
			continue
		}
		break
	}

	// c's pod is terminating but still serving.
	sl := slices[2].DeepCopy()
	sl.Endpoints[0] = withConditions("127.0.0.1", false, true, true)
	update(t, c, sl)
	set := a.nextApplied(t)
	require.Len(t, set, 3)
	cURL := "http://127.0.0.1:" + strconv.Itoa(int(backendPort(t, servers[2])))
	for _, tg := range set {
		assert.Equal(t, tg.URL == cURL, tg.Draining, tg.URL)
	}

	seen = map[string]int{}
	for range 30 {
		code, body := get(t, client, front.URL+"/")
		require.Equal(t, http.StatusOK, code)
		seen[body]++
	}
	assert.Equal(t, map[string]int{"a": 15, "b": 15}, seen, "no new request goes to the draining backend")

	close(release)
	select {
	case got := <-held:
		assert.Equal(t, "200 c", got, "the request in flight on the draining backend finishes")
	case <-time.After(10 * time.Second):
		t.Fatal("the held request did not finish")
	}

	// The pod is gone: its slice is deleted and so is the backend.
	remove(t, c, ns, "web-c")
	require.Len(t, a.nextApplied(t), 2)
	require.Equal(t, 2, pool.Len())
	_, inPool := pool.Get(cURL)
	assert.False(t, inPool)
}
