package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// slowBackend answers /slow with "slow" once the test calls release, and
// every other request at once with "a". arrived receives a value as each
// request for /slow comes in.
type slowBackend struct {
	*httptest.Server
	arrived chan struct{}
	release func()
}

func newSlowBackend(t *testing.T) *slowBackend {
	t.Helper()
	release := make(chan struct{})
	b := &slowBackend{arrived: make(chan struct{}, 10), release: sync.OnceFunc(func() { close(release) })}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/slow" {
			io.WriteString(w, "a")
			return
		}
		b.arrived <- struct{}{}
		select {
		case <-release:
			io.WriteString(w, "slow")
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() {
		b.release()
		b.Close()
	})
	return b
}

type result struct {
	status int
	body   string
	err    error
}

// goDo sends a request in a goroutine; its result arrives on the channel.
func goDo(client *http.Client, method, url string) <-chan result {
	res := make(chan result, 1)
	go func() {
		s, b, err := do(client, method, url)
		res <- result{s, b, err}
	}()
	return res
}

// refused reports whether a TCP connection to addr is refused.
func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return true
	}
	c.Close()
	return false
}

func TestShutdownFinishesInFlight(t *testing.T) {
	slow := newSlowBackend(t)
	path := writeConfig(t, fmt.Sprintf(`{
		"backends": [{"url": %q}],
		"health": {"active": {"interval": "50ms"}},
		"timeouts": {"shutdown": "5s"},
		"status": {"listen": "127.0.0.1:0"}
	}`, slow.URL))
	// Whatever the proxy starts must be gone once it stopped: the
	// health checker above all.
	ignore := goleak.IgnoreCurrent()

	r := start(t, "-config", path)
	addr, statusAddr := r.p.Addr().String(), r.p.StatusAddr().String()
	tr := &http.Transport{}
	client := &http.Client{Timeout: 10 * time.Second, Transport: tr}
	waitFor(t, "a health check", func() bool { return !backendStats(t, r.p.bal, slow.URL).LastCheck.IsZero() })

	res := goDo(client, http.MethodGet, r.url+"/slow")
	<-slow.arrived
	r.shutdown() // as SIGTERM does

	// Both listeners close at once, while the request is still in flight.
	waitFor(t, "the listeners to close", func() bool { return refused(addr) && refused(statusAddr) })
	select {
	case got := <-res:
		t.Fatalf("the request in flight ended before its backend answered: %+v", got)
	default:
	}
	if _, _, err := do(client, http.MethodGet, r.url); err == nil {
		t.Error("a new request was served during the shutdown")
	}

	slow.release()
	if got := <-res; got.err != nil || got.status != http.StatusOK || got.body != "slow" {
		t.Errorf("request in flight at shutdown: status %d, body %q, error %v; want 200 \"slow\"", got.status, got.body, got.err)
	}
	if err := r.stop(); err != nil {
		t.Errorf("run returned %v, want nil", err)
	}
	if len(r.logs.lines("msg=stopped")) != 1 {
		t.Errorf("no \"stopped\" log line:\n%s", r.logs.lines())
	}
	tr.CloseIdleConnections()
	goleak.VerifyNone(t, ignore)
}

func TestShutdownDeadline(t *testing.T) {
	slow := newSlowBackend(t)
	r := start(t, "-backend", slow.URL, "-shutdown-timeout", "200ms")
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Timeout: 10 * time.Second, Transport: tr}

	res := goDo(client, http.MethodGet, r.url+"/slow")
	<-slow.arrived
	began := time.Now()
	if err := r.stop(); err != nil {
		t.Errorf("run returned %v, want nil", err)
	}
	if d := time.Since(began); d > 3*time.Second {
		t.Errorf("shutdown with a 200ms deadline took %v", d)
	}
	if got := <-res; got.err == nil {
		t.Errorf("the request that outlived the deadline got %d %q, want its connection closed", got.status, got.body)
	}
	if len(r.logs.lines("level=WARN", "still in flight at the shutdown deadline")) != 1 {
		t.Errorf("no Warn log line about the requests cut at the deadline:\n%s", r.logs.lines())
	}
}
