package kubernetes_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/discovery"
)

// waitUntil polls cond until it holds, or fails the test after 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10 s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stateOf returns the state bal gives the backend url, and whether it is
// in the pool.
func stateOf(bal *lb.Balancer, url string) (lb.State, bool) {
	for _, bs := range bal.Stats().Backends {
		if bs.URL == url {
			return bs.State, true
		}
	}
	return 0, false
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

// TestEndToEnd runs EndpointSlices → Source → discovery.Watch → Balancer →
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

	w := discovery.Watch(context.Background(), newSource(c), pool, discovery.WithDebounce(time.Millisecond))
	t.Cleanup(func() { require.NoError(t, w.Close()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, w.WaitReady(ctx))
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
	cURL := "http://127.0.0.1:" + strconv.Itoa(int(backendPort(t, servers[2])))
	waitUntil(t, "c draining", func() bool {
		st, ok := stateOf(bal, cURL)
		return ok && st == lb.StateDraining
	})
	assert.Equal(t, 3, pool.Len(), "the draining backend stays in the pool")
	assert.Equal(t, 1, w.Stats().Draining)

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
	waitUntil(t, "c removed", func() bool { return pool.Len() == 2 })
	_, inPool := pool.Get(cURL)
	assert.False(t, inPool)
}
