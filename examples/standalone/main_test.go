package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// defaults is the config of no flags but the given backends.
func defaults(backends ...backendSpec) config {
	return config{
		listen:             defaultListen,
		strategy:           defaultStrategy,
		backends:           backends,
		healthInterval:     defaultHealthInterval,
		passiveMaxFails:    defaultMaxFails,
		passiveFailTimeout: defaultFailTimeout,
		retries:            defaultRetries,
		shutdownTimeout:    defaultShutdownTimeout,
	}
}

func TestParseFlags(t *testing.T) {
	b1 := backendSpec{url: "http://127.0.0.1:9001", weight: 1}
	b2 := backendSpec{url: "http://127.0.0.1:9002", weight: 1}
	b3 := backendSpec{url: "http://127.0.0.1:9003", weight: 1}
	with := func(c config, f func(*config)) config { f(&c); return c }

	tests := []struct {
		name string
		args string
		want config
	}{
		{
			name: "load harness line",
			args: "-listen 127.0.0.1:18090 -strategy rr -backend http://127.0.0.1:9001 -backend http://127.0.0.1:9002 -backend http://127.0.0.1:9003",
			want: with(defaults(b1, b2, b3), func(c *config) { c.listen = "127.0.0.1:18090" }),
		},
		{
			name: "defaults",
			args: "-backend http://127.0.0.1:9001",
			want: defaults(b1),
		},
		{
			name: "weights",
			args: "-listen 127.0.0.1:8080 -strategy swrr -backend http://127.0.0.1:9001=5 -backend http://127.0.0.1:9002",
			want: with(defaults(backendSpec{"http://127.0.0.1:9001", 5}, b2), func(c *config) { c.strategy = "swrr" }),
		},
		{
			name: "explicit weight 1 and max weight",
			args: "-backend http://127.0.0.1:9001=1 -backend https://api.internal/base=1000",
			want: defaults(b1, backendSpec{"https://api.internal/base", 1000}),
		},
		{
			name: "URL with = and a weight",
			args: "-backend http://127.0.0.1:9001/?pool=x=2",
			want: defaults(backendSpec{"http://127.0.0.1:9001/?pool=x", 2}),
		},
		{
			name: "leastconn with health, passive, retries and slow start",
			args: "-strategy leastconn -health-path /healthz -health-interval 2s -passive-max-fails 3 " +
				"-passive-fail-timeout 30s -retries 0 -slow-start 1m -shutdown-timeout 3s " +
				"-backend http://127.0.0.1:9001 -backend http://127.0.0.1:9002",
			want: with(defaults(b1, b2), func(c *config) {
				c.strategy = "leastconn"
				c.healthPath = "/healthz"
				c.healthInterval = 2 * time.Second
				c.passiveMaxFails = 3
				c.passiveFailTimeout = 30 * time.Second
				c.retries = 0
				c.slowStart = time.Minute
				c.shutdownTimeout = 3 * time.Second
			}),
		},
		{
			name: "passive off",
			args: "-passive-max-fails 0 -backend http://127.0.0.1:9001",
			want: with(defaults(b1), func(c *config) { c.passiveMaxFails = 0 }),
		},
		{name: "hash header", args: "-strategy hash -hash-key header:X-User -backend http://127.0.0.1:9001",
			want: with(defaults(b1), func(c *config) { c.strategy, c.hashKey = "hash", "header:X-User" })},
		{name: "hash cookie", args: "-strategy hash -hash-key cookie:sid -backend http://127.0.0.1:9001",
			want: with(defaults(b1), func(c *config) { c.strategy, c.hashKey = "hash", "cookie:sid" })},
		{name: "hash query", args: "-strategy hash -hash-key query:user -backend http://127.0.0.1:9001",
			want: with(defaults(b1), func(c *config) { c.strategy, c.hashKey = "hash", "query:user" })},
		{name: "hash ip", args: "-strategy hash -hash-key ip -backend http://127.0.0.1:9001",
			want: with(defaults(b1), func(c *config) { c.strategy, c.hashKey = "hash", "ip" })},
		{name: "hash path", args: "-strategy=hash -hash-key=path -backend=http://127.0.0.1:9001",
			want: with(defaults(b1), func(c *config) { c.strategy, c.hashKey = "hash", "path" })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFlags(strings.Fields(tt.args))
			if err != nil {
				t.Fatalf("parseFlags(%q): %v", tt.args, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseFlags(%q) =\n%+v\nwant\n%+v", tt.args, got, tt.want)
			}
			// Everything parseFlags accepts builds and closes cleanly.
			bal, err := got.newBalancer(slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatalf("newBalancer: %v", err)
			}
			bal.Close()
		})
	}
}

func TestParseFlagsErrors(t *testing.T) {
	const be = " -backend http://127.0.0.1:9001"
	tests := []struct {
		name, args, want string // want: a substring of the error
	}{
		{"no backends", "-strategy rr", "no backends"},
		{"no flags", "", "no backends"},
		{"unknown strategy", "-strategy random" + be, `unknown -strategy "random"`},
		{"strategy case", "-strategy RR" + be, `unknown -strategy "RR"`},
		{"weight zero", "-backend http://127.0.0.1:9001=0", "weight 0"},
		{"weight negative", "-backend http://127.0.0.1:9001=-1", "weight -1"},
		{"weight too big", "-backend http://127.0.0.1:9001=1001", "weight 1001"},
		{"weight not a number", "-backend http://127.0.0.1:9001=x", `invalid -backend "http://127.0.0.1:9001=x": weight "x" is not an integer`},
		{"weight fraction", "-backend http://127.0.0.1:9001=1.5", `weight "1.5" is not an integer`},
		{"weight missing", "-backend http://127.0.0.1:9001=", `missing weight`},
		{"URL without scheme", "-backend 127.0.0.1:9001", `invalid -backend "127.0.0.1:9001": want an http:// or https:// URL`},
		{"URL with bad scheme", "-backend ftp://127.0.0.1:9001", "scheme must be http or https"},
		{"URL without host", "-backend http://", "missing host"},
		{"URL with bad port", "-backend http://127.0.0.1:99999", "port"},
		{"URL with credentials", "-backend http://user:secret@127.0.0.1:9001", "credentials"},
		{"URL with credentials, bad weight", "-backend http://user:secret@127.0.0.1:9001=x", `"http://xxxxx@127.0.0.1:9001=x": weight "x"`},
		{"duplicate backend", be + be, "duplicate backend"},
		{"duplicate backend, other spelling", be + " -backend HTTP://127.0.0.1:9001/=3", "duplicate backend"},
		{"hash without key", "-strategy hash" + be, "-strategy hash needs -hash-key"},
		{"hash key without hash", "-strategy swrr -hash-key ip" + be, "only used with -strategy hash"},
		{"hash key unknown", "-strategy hash -hash-key user" + be, `invalid -hash-key "user"`},
		{"hash key without name", "-strategy hash -hash-key header" + be, "want header:NAME"},
		{"hash key empty name", "-strategy hash -hash-key cookie:" + be, "empty name"},
		{"hash key ip with name", "-strategy hash -hash-key ip:x" + be, `invalid -hash-key "ip:x"`},
		{"health path relative", "-health-path healthz" + be, `invalid -health-path "healthz"`},
		{"health interval alone", "-health-interval 2s" + be, "-health-interval needs -health-path"},
		{"health interval zero", "-health-path /healthz -health-interval 0s" + be, "invalid -health-interval"},
		{"health interval not a duration", "-health-path /healthz -health-interval 2" + be, "invalid value"},
		{"passive negative", "-passive-max-fails -1" + be, "invalid -passive-max-fails -1"},
		{"passive timeout zero", "-passive-fail-timeout 0s" + be, "invalid -passive-fail-timeout"},
		{"passive timeout while off", "-passive-max-fails 0 -passive-fail-timeout 5s" + be, "no effect"},
		{"retries negative", "-retries -1" + be, "invalid -retries -1"},
		{"retries not a number", "-retries many" + be, "invalid value"},
		{"slow start negative", "-slow-start -1s" + be, "invalid -slow-start"},
		{"shutdown timeout zero", "-shutdown-timeout 0s" + be, "invalid -shutdown-timeout"},
		{"listen without port", "-listen 127.0.0.1" + be, "invalid -listen"},
		{"unknown flag", "-weight 5" + be, "flag provided but not defined: -weight"},
		{"positional backend", "http://127.0.0.1:9001", "unexpected argument"},
		{"positional after flags", be + " extra", `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseFlags(strings.Fields(tt.args))
			if err == nil {
				t.Fatalf("parseFlags(%q) = %+v, want an error containing %q", tt.args, c, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("parseFlags(%q) error = %q, want it to contain %q", tt.args, err, tt.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q reveals a password", err)
			}
		})
	}
}

func TestParseFlagsHelp(t *testing.T) {
	for _, arg := range []string{"-h", "-help", "--help"} {
		if _, err := parseFlags([]string{arg}); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("parseFlags(%s) error = %v, want flag.ErrHelp", arg, err)
		}
	}
	var b strings.Builder
	usage(&b, "tinylb")
	for _, want := range []string{"Usage: tinylb", "-backend URL[=WEIGHT]", "-strategy strategy", "-hash-key", "-health-path", "-retries"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, b.String())
		}
	}
}

// backend is a test server that answers its name, after delay.
func backend(t *testing.T, name string, delay time.Duration) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			io.Copy(io.Discard, r.Body)
		}
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, name)
	}))
	t.Cleanup(s.Close)
	return s
}

// start runs the proxy in-process on 127.0.0.1:0 with args. It returns
// the proxy's URL and a function that stops it as SIGTERM does and returns
// run's result; the test's cleanup calls it too.
func start(t *testing.T, args ...string) (string, func() error) {
	t.Helper()
	cfg, err := parseFlags(append([]string{"-listen", "127.0.0.1:0"}, args...))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan net.Addr, 1)
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	go func() { done <- run(ctx, cfg, log, func(a net.Addr) { addr <- a }) }()
	stop := sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("proxy did not stop within 10s")
		}
	})
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("run: %v", err)
		}
	})
	select {
	case a := <-addr:
		return "http://" + a.String(), stop
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("proxy did not start within 10s")
	}
	return "", nil
}

// do sends a request with a small body and returns the answer.
func do(client *http.Client, method, url string) (int, string, error) {
	req, err := http.NewRequest(method, url, strings.NewReader("hello"))
	if err != nil {
		return 0, "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

func get(t *testing.T, client *http.Client, method, url string) (int, string) {
	t.Helper()
	status, body, err := do(client, method, url)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return status, body
}

// deadURL returns the URL of a port that refuses connections.
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + ln.Addr().String()
	ln.Close()
	return u
}

func TestProxyEndToEnd(t *testing.T) {
	a, b := backend(t, "a", 0), backend(t, "b", 0)
	url, _ := start(t, "-strategy", "swrr", "-backend", a.URL+"=3", "-backend", b.URL)
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()

	got := make(map[string]int)
	for range 8 {
		status, body := get(t, client, http.MethodGet, url+"/x")
		if status != http.StatusOK {
			t.Fatalf("GET: status %d (%q), want 200", status, body)
		}
		got[body]++
	}
	if got["a"] != 6 || got["b"] != 2 {
		t.Errorf("8 requests at weights 3:1 went %v, want a:6 b:2", got)
	}
	if status, body := get(t, client, http.MethodPost, url+"/form"); status != http.StatusOK {
		t.Errorf("POST: status %d (%q), want 200", status, body)
	}
}

func TestProxyDeadBackend(t *testing.T) {
	a, b := backend(t, "a", 0), backend(t, "b", 0)
	url, _ := start(t, "-backend", a.URL, "-backend", deadURL(t), "-backend", b.URL)
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()

	// The dead backend refuses connections: every request is retried on
	// another backend (a POST too, since nothing of it was sent).
	for _, method := range []string{http.MethodGet, http.MethodPost, http.MethodGet, http.MethodPost, http.MethodGet, http.MethodGet} {
		if status, body := get(t, client, method, url); status != http.StatusOK || (body != "a" && body != "b") {
			t.Fatalf("%s: status %d, body %q; want 200 from a or b", method, status, body)
		}
	}
}

func TestProxyNoBackendAnswers(t *testing.T) {
	url, _ := start(t, "-backend", deadURL(t), "-backend", deadURL(t))
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	status, body := get(t, client, http.MethodGet, url)
	if status != http.StatusBadGateway && status != http.StatusServiceUnavailable {
		t.Errorf("GET with every backend dead: status %d (%q), want 502 or 503", status, body)
	}
	if strings.Contains(body, "127.0.0.1") {
		t.Errorf("error body %q reveals a backend address", body)
	}
}

func TestProxyGracefulShutdown(t *testing.T) {
	arrived := make(chan struct{}, 1)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		time.Sleep(300 * time.Millisecond)
		io.WriteString(w, "slow")
	}))
	defer slow.Close()
	url, stop := start(t, "-backend", slow.URL, "-shutdown-timeout", "5s")
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()

	type result struct {
		status int
		body   string
		err    error
	}
	res := make(chan result, 1)
	go func() {
		s, b, err := do(client, http.MethodGet, url)
		res <- result{s, b, err}
	}()
	<-arrived
	if err := stop(); err != nil { // waits for the request in flight
		t.Errorf("run returned %v, want nil", err)
	}
	if r := <-res; r.err != nil || r.status != http.StatusOK || r.body != "slow" {
		t.Errorf("request in flight at shutdown: status %d, body %q, error %v; want 200 \"slow\"", r.status, r.body, r.err)
	}
	if _, _, err := do(client, http.MethodGet, url); err == nil {
		t.Error("proxy still answers after shutdown")
	}
}
