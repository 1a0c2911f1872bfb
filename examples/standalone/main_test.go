package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the run if a goroutine outlives the tests: every proxy is
// shut down, every balancer closed (stopping its health checkers) and every
// transport's idle connections closed by the tests, so whatever is left
// was leaked. With TINYLB_TEST_MAIN_ARGS set, the test binary runs main
// with those arguments instead (a JSON list), for the tests of the real
// process: exit statuses and signals.
func TestMain(m *testing.M) {
	if raw, ok := os.LookupEnv("TINYLB_TEST_MAIN_ARGS"); ok {
		var args []string
		if err := json.Unmarshal([]byte(raw), &args); err != nil {
			panic(err)
		}
		// Keep the test binary's name as the program name: main must
		// call itself tinylb whatever its binary is called.
		os.Args = append(os.Args[:1], args...)
		main()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// defaults is the config of no file and no flags but the given backends.
func defaults(backends ...backendConfig) config {
	c := defaultConfig()
	c.Backends = backends
	return c
}

func TestParseFlags(t *testing.T) {
	b1 := backendConfig{URL: "http://127.0.0.1:9001", Weight: 1}
	b2 := backendConfig{URL: "http://127.0.0.1:9002", Weight: 1}
	b3 := backendConfig{URL: "http://127.0.0.1:9003", Weight: 1}
	with := func(c config, f func(*config)) config { f(&c); return c }

	tests := []struct {
		name string
		args string
		want config
	}{
		{
			name: "load harness line",
			args: "-listen 127.0.0.1:18090 -strategy rr -backend http://127.0.0.1:9001 -backend http://127.0.0.1:9002 -backend http://127.0.0.1:9003",
			want: with(defaults(b1, b2, b3), func(c *config) { c.Listen = "127.0.0.1:18090" }),
		},
		{
			name: "defaults",
			args: "-backend http://127.0.0.1:9001",
			want: defaults(b1),
		},
		{
			name: "weights",
			args: "-listen 127.0.0.1:8080 -strategy swrr -backend http://127.0.0.1:9001=5 -backend http://127.0.0.1:9002",
			want: with(defaults(backendConfig{URL: "http://127.0.0.1:9001", Weight: 5}, b2), func(c *config) { c.Strategy = "swrr" }),
		},
		{
			name: "explicit weight 1 and max weight",
			args: "-backend http://127.0.0.1:9001=1 -backend https://api.internal/base=1000",
			want: defaults(b1, backendConfig{URL: "https://api.internal/base", Weight: 1000}),
		},
		{
			name: "URL with = and a weight",
			args: "-backend http://127.0.0.1:9001/?pool=x=2",
			want: defaults(backendConfig{URL: "http://127.0.0.1:9001/?pool=x", Weight: 2}),
		},
		{
			name: "leastconn with health, passive, retries and slow start",
			args: "-strategy leastconn -health-path /healthz -health-interval 2s -passive-max-fails 3 " +
				"-passive-fail-timeout 30s -tries 1 -slow-start 1m -shutdown-timeout 3s " +
				"-backend http://127.0.0.1:9001 -backend http://127.0.0.1:9002",
			want: with(defaults(b1, b2), func(c *config) {
				c.Strategy = "leastconn"
				c.Health.Active = &activeConfig{Path: "/healthz", Interval: duration(2 * time.Second)}
				c.Health.Passive.MaxFails = 3
				c.Health.Passive.FailTimeout = duration(30 * time.Second)
				c.Retries.Tries = 1
				c.SlowStart = duration(time.Minute)
				c.Timeouts.Shutdown = duration(3 * time.Second)
			}),
		},
		{
			name: "passive off",
			args: "-passive-max-fails -1 -backend http://127.0.0.1:9001",
			want: with(defaults(b1), func(c *config) { c.Health.Passive.MaxFails = -1 }),
		},
		{name: "hash header", args: "-strategy hash -hash-key header:X-User -backend http://127.0.0.1:9001",
			want: with(defaults(b1), func(c *config) { c.Strategy, c.HashKey = "hash", "header:X-User" })},
		{name: "hash cookie", args: "-strategy hash -hash-key cookie:sid -backend http://127.0.0.1:9001",
			want: with(defaults(b1), func(c *config) { c.Strategy, c.HashKey = "hash", "cookie:sid" })},
		{name: "hash query", args: "-strategy hash -hash-key query:user -backend http://127.0.0.1:9001",
			want: with(defaults(b1), func(c *config) { c.Strategy, c.HashKey = "hash", "query:user" })},
		{name: "hash ip", args: "-strategy hash -hash-key ip -backend http://127.0.0.1:9001",
			want: with(defaults(b1), func(c *config) { c.Strategy, c.HashKey = "hash", "ip" })},
		{name: "hash path", args: "-strategy=hash -hash-key=path -backend=http://127.0.0.1:9001",
			want: with(defaults(b1), func(c *config) { c.Strategy, c.HashKey = "hash", "path" })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := load(strings.Fields(tt.args))
			if err != nil {
				t.Fatalf("load(%q): %v", tt.args, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("load(%q) =\n%s\nwant\n%s", tt.args, dump(got), dump(tt.want))
			}
			buildAndClose(t, got)
		})
	}
}

// dump writes c as its config file would.
func dump(c config) string {
	b, _ := json.MarshalIndent(c, "", "  ")
	return string(b)
}

// buildAndClose checks that c builds a balancer, and closes it.
func buildAndClose(t *testing.T, c config) {
	t.Helper()
	// The balancer may start health checks and load-report polls at once:
	// point them at closed ports on 127.0.0.1, never at the addresses of
	// the configuration under test (lb.example.json names 10.0.0.x).
	c.Backends = slices.Clone(c.Backends)
	for i := range c.Backends {
		c.Backends[i].URL = fmt.Sprintf("http://127.0.0.1:%d", 9+i)
	}
	tr := c.newTransport()
	defer tr.CloseIdleConnections()
	bal, err := c.newBalancer(slog.New(slog.DiscardHandler), tr)
	if err != nil {
		t.Fatalf("newBalancer: %v", err)
	}
	bal.Close()
}

func TestParseFlagsErrors(t *testing.T) {
	const be = " -backend http://127.0.0.1:9001"
	tests := []struct {
		name, args, want string // want: a substring of the error
	}{
		{"no backends", "-strategy rr", "no backends"},
		{"no flags", "", "no backends"},
		{"unknown strategy", "-strategy random" + be, `-strategy: "random": unknown strategy: want rr, swrr, leastconn, leastrequest, peakewma, hash or boundedhash`},
		{"strategy case", "-strategy RR" + be, `-strategy: "RR": unknown strategy`},
		{"weight zero", "-backend http://127.0.0.1:9001=0", "weight 0"},
		{"weight negative", "-backend http://127.0.0.1:9001=-1", "weight -1"},
		{"weight too big", "-backend http://127.0.0.1:9001=1001", "weight 1001"},
		{"weight not a number", "-backend http://127.0.0.1:9001=x", `invalid -backend "http://127.0.0.1:9001=x": weight "x" is not an integer`},
		{"weight fraction", "-backend http://127.0.0.1:9001=1.5", `weight "1.5" is not an integer`},
		{"weight missing", "-backend http://127.0.0.1:9001=", `missing weight`},
		{"URL without scheme", "-backend 127.0.0.1:9001", `invalid -backend "127.0.0.1:9001": want an http:// or https:// URL`},
		{"URL with bad scheme", "-backend ftp://127.0.0.1:9001", `invalid -backend "ftp://127.0.0.1:9001": want an http:// or https:// URL, not ftp://`},
		{"URL without host", "-backend http://", "missing host"},
		{"URL with bad port", "-backend http://127.0.0.1:99999", "port"},
		{"URL with credentials", "-backend http://user:secret@127.0.0.1:9001", "credentials"},
		{"URL with credentials, bad weight", "-backend http://user:secret@127.0.0.1:9001=x", `"http://xxxxx@127.0.0.1:9001=x": weight "x"`},
		{"duplicate backend", be + be, `-backend: "http://127.0.0.1:9001": duplicate backend`},
		{"duplicate backend, other spelling", be + " -backend HTTP://127.0.0.1:9001/=3", "duplicate backend"},
		{"hash without key", "-strategy hash" + be, "-hash-key: strategy hash needs a hash key"},
		{"hash key without hash", "-strategy swrr -hash-key ip" + be, `-hash-key: "ip": only used with strategy hash or boundedhash, not swrr`},
		{"hash key unknown", "-strategy hash -hash-key user" + be, `-hash-key: "user": want header:NAME, cookie:NAME, query:NAME, ip or path`},
		{"hash key without name", "-strategy hash -hash-key header" + be, "want header:NAME"},
		{"hash key empty name", "-strategy hash -hash-key cookie:" + be, "empty name"},
		{"hash key ip with name", "-strategy hash -hash-key ip:x" + be, `-hash-key: "ip:x"`},
		{"health path relative", "-health-path healthz" + be, `-health-path: "healthz": must start with /`},
		{"health interval alone", "-health-interval 2s" + be, "-health-interval needs -health-path"},
		{"health interval negative", "-health-path /healthz -health-interval -1s" + be, `-health-interval: "-1s": must not be negative (0 is the default, 5s)`},
		{"health interval not a duration", "-health-path /healthz -health-interval 2" + be, "invalid value"},
		{"passive below -1", "-passive-max-fails -2" + be, "-passive-max-fails: -2: must be -1 (off), 0 (the default, 1) or more"},
		{"passive timeout negative", "-passive-fail-timeout -1s" + be, `-passive-fail-timeout: "-1s": must not be negative (0 is the default, 10s)`},
		{"passive timeout while off", "-passive-max-fails -1 -passive-fail-timeout 5s" + be, "no effect"},
		{"tries negative", "-tries -1" + be, "-tries: -1: must not be negative"},
		{"tries not a number", "-tries many" + be, "invalid value"},
		{"retries", "-retries 2" + be, "-retries: no such flag: use -tries"},
		{"slow start negative", "-slow-start -1s" + be, `-slow-start: "-1s": must not be negative`},
		{"shutdown timeout zero", "-shutdown-timeout 0s" + be, `-shutdown-timeout: "0s": must be positive`},
		{"listen without port", "-listen 127.0.0.1" + be, `-listen: "127.0.0.1": want host:port`},
		{"unknown flag", "-weight 5" + be, "flag provided but not defined: -weight"},
		{"positional backend", "http://127.0.0.1:9001", "unexpected argument"},
		{"positional after flags", be + " extra", `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(strings.Fields(tt.args))
			if err == nil {
				t.Fatalf("load(%q) = %+v, want an error containing %q", tt.args, c, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("load(%q) error = %q, want it to contain %q", tt.args, err, tt.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q reveals a password", err)
			}
		})
	}
}

func TestParseFlagsHelp(t *testing.T) {
	for _, arg := range []string{"-h", "-help", "--help"} {
		if _, err := load([]string{arg}); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("load(%s) error = %v, want flag.ErrHelp", arg, err)
		}
	}
	var b strings.Builder
	usage(&b)
	for _, want := range []string{"Usage: tinylb", "-backend URL[=WEIGHT]", "-strategy strategy", "-hash-key", "-health-path", "-tries", "-config file", "SIGHUP"} {
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

// running is a proxy run in-process by start.
type running struct {
	url  string // of the proxy
	p    *proxy
	logs *logBuffer
	// shutdown starts a graceful shutdown, as SIGTERM does; stop does it
	// and returns run's result. The test's cleanup calls stop too.
	shutdown context.CancelFunc
	stop     func() error
}

// start runs the proxy in-process on 127.0.0.1:0 with args (which may
// name a -config file), until the test ends.
func start(t *testing.T, args ...string) *running {
	t.Helper()
	return startWith(t, nil, args...)
}

// startWith is start with a channel of reload signals.
func startWith(t *testing.T, reload <-chan os.Signal, args ...string) *running {
	t.Helper()
	args = append([]string{"-listen", "127.0.0.1:0"}, args...)
	cfg, err := load(args)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{w: t.Output()}
	level := new(slog.LevelVar)
	level.Set(cfg.level())
	env := runEnv{
		args:   args,
		log:    slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: level})),
		level:  level,
		reload: reload,
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *proxy, 1)
	env.ready = func(p *proxy) { ready <- p }
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, env) }()
	r := &running{logs: logs, shutdown: cancel}
	r.stop = sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("proxy did not stop within 10s")
		}
	})
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Errorf("run: %v", err)
		}
	})
	select {
	case r.p = <-ready:
		r.url = "http://" + r.p.Addr().String()
		return r
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("proxy did not start within 10s")
	}
	return nil
}

// logBuffer keeps the proxy's logs for the test to read, and passes them
// on to w.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	w   io.Writer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	return b.w.Write(p)
}

// lines returns the lines logged so far that contain every one of want.
func (b *logBuffer) lines(want ...string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
next:
	for line := range strings.Lines(b.buf.String()) {
		for _, w := range want {
			if !strings.Contains(line, w) {
				continue next
			}
		}
		out = append(out, line)
	}
	return out
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
	url := start(t, "-strategy", "swrr", "-backend", a.URL+"=3", "-backend", b.URL).url
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
	url := start(t, "-backend", a.URL, "-backend", deadURL(t), "-backend", b.URL).url
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
	url := start(t, "-backend", deadURL(t), "-backend", deadURL(t)).url
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
