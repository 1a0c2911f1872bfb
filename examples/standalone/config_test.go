package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// writeConfig writes a config file in the test's directory and returns its
// path.
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lb.json")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// rewrite replaces the content of the config file at path.
func rewrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestConfigExampleFile(t *testing.T) {
	t.Setenv("TINYLB_STATUS_TOKEN", "an-example-token-of-some-length")
	t.Setenv("TINYLB_STICKY_SECRET", "an-example-secret-of-32-bytes-ok")
	got, err := load([]string{"-config", "lb.example.json"})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	s := func(d time.Duration) duration { return duration(d) }
	want := config{
		Listen:   "127.0.0.1:8080",
		Strategy: "swrr",
		Backends: []backendConfig{
			{URL: "http://10.0.0.1:8080", Weight: 5},
			{URL: "http://10.0.0.2:8080", Weight: 1},
			{URL: "http://10.0.0.9:8080", Weight: 1, Backup: true},
		},
		BackendProtocol: "http1",
		Health: healthConfig{
			Active: &activeConfig{
				Path: "/healthz", Interval: s(5 * time.Second), Timeout: s(2 * time.Second),
				Rise: 2, Fall: 3, StatusMin: 200, StatusMax: 299,
				Host: "app.internal", Headers: map[string]string{"User-Agent": "tinylb-health"}, Body: "ok",
			},
			Passive: passiveConfig{MaxFails: 3, FailTimeout: s(10 * time.Second), FailStatuses: []int{502, 503, 504}},
		},
		Retries: retryConfig{
			Tries: 3, Timeout: s(10 * time.Second), Statuses: []int{502, 503, 504}, BodyBuffer: 1 << 20,
			Budget: 0.2, MinRetries: 3,
		},
		RequestBuffering: bufferingConfig{Max: 1 << 20, Timeout: s(30 * time.Second)},
		BodyMemory:       64 << 20,
		SlowStart:        s(30 * time.Second),
		PanicThreshold:   50,
		RetryAfter:       s(5 * time.Second),
		StickyCookie: &stickyConfig{
			Name: "tinylb", Path: "/", MaxAge: s(time.Hour), Secure: true, HTTPOnly: true, SameSite: "lax",
			SecretEnv: "TINYLB_STICKY_SECRET", secret: []byte("an-example-secret-of-32-bytes-ok"),
		},
		LoadReports: &loadReportsConfig{
			Header: "endpoint-load-metrics", StripHeader: true, PollPath: "/load", PollInterval: s(10 * time.Second),
			Blackout: s(10 * time.Second), Expiration: s(3 * time.Minute), UpdatePeriod: s(time.Second),
			Penalty: 1, MaxFactor: 10, MeasureWindow: s(10 * time.Second),
		},
		Timeouts: timeoutConfig{
			ReadHeader: s(10 * time.Second), Idle: s(2 * time.Minute), Shutdown: s(30 * time.Second),
			UpstreamDial: s(5 * time.Second), UpstreamResponseHeader: s(30 * time.Second),
		},
		MaxHeaderBytes: 64 << 10,
		HTTP2: http2Config{
			MaxConcurrentStreams: 250, MaxReadFrameSize: 1 << 20,
			MaxReceiveBufferPerConnection: 1 << 20, MaxReceiveBufferPerStream: 1 << 20,
		},
		TrustedProxies: []string{"10.0.0.0/8", "192.168.1.10"},
		Status:         statusConfig{Listen: "127.0.0.1:8081", Actions: true, TokenEnv: "TINYLB_STATUS_TOKEN"},
		LogLevel:       "info",
		file:           "lb.example.json",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("load(lb.example.json) =\n%s\nwant\n%s", dump(got), dump(want))
	}
	buildAndClose(t, got)

	// Without the token in the environment, the same file is refused.
	t.Setenv("TINYLB_STATUS_TOKEN", "")
	if _, err := load([]string{"-config", "lb.example.json"}); err == nil ||
		!strings.Contains(err.Error(), `lb.example.json: status.token_env: "TINYLB_STATUS_TOKEN": the environment variable is empty or unset`) {
		t.Errorf("load without the token: error %v", err)
	}
}

func TestConfigFileDefaults(t *testing.T) {
	// A file that names only the backends gets the defaults of the flags;
	// an object names only the fields it changes.
	path := writeConfig(t, `{
		"backends": [{"url": "http://127.0.0.1:9001"}, {"url": "http://127.0.0.1:9002", "weight": 7}],
		"health": {"active": {"path": "/ping"}, "passive": {"max_fails": 4}},
		"timeouts": {"idle": "30s"}
	}`)
	got, err := load([]string{"-config", path})
	if err != nil {
		t.Fatal(err)
	}
	want := defaults(
		backendConfig{URL: "http://127.0.0.1:9001", Weight: 1},
		backendConfig{URL: "http://127.0.0.1:9002", Weight: 7},
	)
	want.Health.Active = &activeConfig{Path: "/ping"}
	want.Health.Passive.MaxFails = 4
	want.Timeouts.Idle = duration(30 * time.Second)
	want.file = path
	if !reflect.DeepEqual(got, want) {
		t.Errorf("load =\n%s\nwant\n%s", dump(got), dump(want))
	}
	buildAndClose(t, got)
}

func TestConfigFlagsOverrideFile(t *testing.T) {
	path := writeConfig(t, `{
		"listen": "127.0.0.1:7000",
		"strategy": "swrr",
		"backends": [{"url": "http://127.0.0.1:9001", "weight": 2}, {"url": "http://127.0.0.1:9002"}],
		"health": {"active": {"path": "/ping", "interval": "1s", "rise": 4}, "passive": {"max_fails": 3, "fail_timeout": "20s"}},
		"retries": {"tries": 5},
		"slow_start": "1m",
		"timeouts": {"shutdown": "20s"}
	}`)
	tests := []struct {
		name string
		args string
		edit func(*config) // applied to the file's config
	}{
		{"no flags: the file", "", func(*config) {}},
		{"flags left at their defaults do not override", "-tries 3 -slow-start 0s", func(c *config) {
			c.Retries.Tries = 3
			c.SlowStart = 0
		}},
		{"listen and strategy", "-listen 127.0.0.1:7001 -strategy leastconn", func(c *config) {
			c.Listen, c.Strategy = "127.0.0.1:7001", "leastconn"
		}},
		{"hash", "-strategy hash -hash-key cookie:sid", func(c *config) { c.Strategy, c.HashKey = "hash", "cookie:sid" }},
		{"backends are replaced, not added to", "-backend http://127.0.0.1:9003=4", func(c *config) {
			c.Backends = []backendConfig{{URL: "http://127.0.0.1:9003", Weight: 4}}
		}},
		{"health interval keeps the file's other health settings", "-health-interval 3s", func(c *config) {
			c.Health.Active.Interval = duration(3 * time.Second)
		}},
		{"health path", "-health-path /healthz", func(c *config) { c.Health.Active.Path = "/healthz" }},
		{"empty health path turns active checks off", "-health-path=", func(c *config) { c.Health.Active = nil }},
		{"passive default", "-passive-max-fails 0", func(c *config) { c.Health.Passive.MaxFails = 0 }},
		{"passive off", "-passive-max-fails -1", func(c *config) { c.Health.Passive.MaxFails = -1 }},
		{"passive timeout", "-passive-fail-timeout 5s", func(c *config) { c.Health.Passive.FailTimeout = duration(5 * time.Second) }},
		{"retries off", "-tries 1", func(c *config) { c.Retries.Tries = 1 }},
		{"shutdown timeout", "-shutdown-timeout 1s", func(c *config) { c.Timeouts.Shutdown = duration(time.Second) }},
		{"flags after -config too", "-strategy rr -config " + path, func(c *config) { c.Strategy = "rr" }},
	}
	file, err := load([]string{"-config", path})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"-config", path}, strings.Fields(tt.args)...)
			got, err := load(args)
			if err != nil {
				t.Fatalf("load(%q): %v", args, err)
			}
			want := file
			a := *file.Health.Active
			want.Health.Active = &a
			tt.edit(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("load(%q) =\n%s\nwant\n%s", args, dump(got), dump(want))
			}
		})
	}

	// A bad flag is reported under its name, a bad file setting under its
	// path.
	if _, err := load([]string{"-config", path, "-strategy", "random"}); err == nil || !strings.HasPrefix(err.Error(), `-strategy: "random"`) {
		t.Errorf("bad -strategy over a file: error %v", err)
	}
	bad := writeConfig(t, `{"strategy": "random", "backends": [{"url": "http://127.0.0.1:9001"}]}`)
	if _, err := load([]string{"-config", bad}); err == nil || err.Error() != bad+`: strategy: "random": unknown strategy: want rr, swrr, leastconn, leastrequest, peakewma, hash or boundedhash` {
		t.Errorf("bad strategy in a file: error %v", err)
	}
	// ... and a flag can fix a bad file setting.
	if _, err := load([]string{"-config", bad, "-strategy", "rr"}); err != nil {
		t.Errorf("-strategy over a bad file strategy: %v", err)
	}
}

func TestConfigFileErrors(t *testing.T) {
	const be = `"backends": [{"url": "http://127.0.0.1:9001"}]`
	three := `"backends": [{"url": "http://127.0.0.1:9001"}, {"url": "http://127.0.0.1:9002"}, `
	tests := []struct {
		name, file, want string // want: a substring of the error, after the file's path
	}{
		// JSON
		{"empty file", ``, "empty file: want a JSON object"},
		{"syntax error", "{\n  \"listen\": \"x\",\n  }", `:3:3: invalid JSON: invalid character '}'`},
		{"unexpected end", `{"listen": "127.0.0.1:8080"`, "unexpected end of file"},
		{"trailing data", `{` + be + `} {}`, ":1:50: unexpected data after the top-level object"},
		{"not an object", `[1, 2]`, "(top level): [...]: want an object"},

		// unknown fields, with their path
		{"unknown top-level field", `{"backend": [], ` + be + `}`, "backend: unknown field (want listen, strategy, hash_key, balance_factor, backends,"},
		{"unknown backend field", `{` + three + `{"url": "http://127.0.0.1:9003", "wieght": 2}]}`, "backends[2].wieght: unknown field (want url, weight or backup)"},
		{"unknown health field", `{` + be + `, "health": {"active": {"intervall": "2s"}}}`, "health.active.intervall: unknown field (want path, method,"},
		{"unknown passive field", `{` + be + `, "health": {"passive": {"max_fail": 2}}}`, "health.passive.max_fail: unknown field"},
		{"unknown retries field", `{` + be + `, "retries": {"attempts": 2}}`, "retries.attempts: unknown field (want tries, timeout, statuses, non_idempotent, body_buffer, budget or min_retries)"},
		{"unknown timeouts field", `{` + be + `, "timeouts": {"header": "2s"}}`, "timeouts.header: unknown field"},
		{"unknown status field", `{` + be + `, "status": {"addr": ":8081"}}`, "status.addr: unknown field"},

		// types
		{"weight as a string", `{"backends": [{"url": "http://127.0.0.1:9001", "weight": "5"}]}`, `backends[0].weight: "5": want an integer`},
		{"weight fraction", `{"backends": [{"url": "http://127.0.0.1:9001", "weight": 1.5}]}`, `backends[0].weight: 1.5: want an integer`},
		{"backend as a string", `{"backends": ["http://127.0.0.1:9001"]}`, `backends[0]: "http://127.0.0.1:9001": want an object`},
		{"backup as a string", `{"backends": [{"url": "http://127.0.0.1:9001", "backup": "yes"}]}`, `backends[0].backup: "yes": want true or false`},
		{"active as a number", `{` + be + `, "health": {"active": 5}}`, `health.active: 5: want an object`},
		{"status list of strings", `{` + be + `, "retries": {"statuses": ["502"]}}`, `retries.statuses[0]: "502": want an integer`},
		{"header as a number", `{` + be + `, "health": {"active": {"headers": {"X-A": 1}}}}`, `health.active.headers["X-A"]: 1: want a string`},

		// durations
		{"bad duration", `{` + be + `, "health": {"active": {"interval": "2x"}}}`, `health.active.interval: "2x": invalid duration`},
		{"duration without unit", `{` + be + `, "slow_start": "30"}`, `slow_start: "30": invalid duration`},
		{"duration as a number", `{` + be + `, "timeouts": {"idle": 30}}`, `timeouts.idle: 30: invalid duration: want a string such as "2s"`},
		{"negative duration", `{` + be + `, "slow_start": "-1s"}`, `slow_start: "-1s": must not be negative`},
		{"negative interval", `{` + be + `, "health": {"active": {"interval": "-1s"}}}`, `health.active.interval: "-1s": must not be negative (0 is the default, 5s)`},
		{"budget as a string", `{` + be + `, "retries": {"budget": "0.2"}}`, `retries.budget: "0.2": want a number`},
		{"backend protocol", `{` + be + `, "backend_protocol": "h2c"}`, `backend_protocol: "h2c": want http1, http2-grpc or http2`},

		// backends
		{"no backends", `{"listen": "127.0.0.1:8080"}`, "no backends"},
		{"empty backends", `{"backends": []}`, "no backends"},
		{"weight zero", `{` + three + `{"url": "http://127.0.0.1:9003", "weight": 0}]}`, "backends[2].weight: 0: must be between 1 and 1000"},
		{"weight too big", `{"backends": [{"url": "http://127.0.0.1:9001", "weight": 1001}]}`, "backends[0].weight: 1001: must be between 1 and 1000"},
		{"weight negative", `{"backends": [{"url": "http://127.0.0.1:9001", "weight": -1}]}`, "backends[0].weight: -1: must be between 1 and 1000"},
		{"URL missing", `{"backends": [{"weight": 2}]}`, `backends[0].url: "": empty`},
		{"URL without scheme", `{"backends": [{"url": "127.0.0.1:9001"}]}`, `backends[0].url: "127.0.0.1:9001": want an http:// or https:// URL`},
		{"URL with bad scheme", `{"backends": [{"url": "ftp://127.0.0.1:9001"}]}`, `backends[0].url: "ftp://127.0.0.1:9001": want an http:// or https:// URL, not ftp://`},
		{"URL without host", `{"backends": [{"url": "http://"}]}`, `backends[0].url: "http://": missing host`},
		{"URL with bad port", `{"backends": [{"url": "http://127.0.0.1:99999"}]}`, `backends[0].url: "http://127.0.0.1:99999": port must be between 1 and 65535`},
		{"URL with credentials", `{"backends": [{"url": "http://user:secret@127.0.0.1:9001"}]}`, `backends[0].url: "http://xxxxx@127.0.0.1:9001": credentials are not allowed`},
		{"duplicate backend", `{"backends": [{"url": "http://127.0.0.1:9001"}, {"url": "HTTP://127.0.0.1:9001/", "weight": 3}]}`,
			`backends[1].url: "HTTP://127.0.0.1:9001/": duplicate backend: the same as backends[0]`},

		// strategy
		{"unknown strategy", `{"strategy": "random", ` + be + `}`, `strategy: "random": unknown strategy`},
		{"hash without key", `{"strategy": "hash", ` + be + `}`, `hash_key: strategy hash needs a hash key`},
		{"hash key without hash", `{"hash_key": "ip", ` + be + `}`, `hash_key: "ip": only used with strategy hash or boundedhash, not rr`},
		{"bad hash key", `{"strategy": "hash", "hash_key": "header", ` + be + `}`, `hash_key: "header": want header:NAME`},
		{"bad listen", `{"listen": "8080", ` + be + `}`, `listen: "8080": want host:port`},

		// health
		{"relative health path", `{` + be + `, "health": {"active": {"path": "healthz"}}}`, `health.active.path: "healthz": must start with /`},
		{"timeout above interval", `{` + be + `, "health": {"active": {"interval": "1s", "timeout": "2s"}}}`, `health.active.timeout: "2s": longer than health.active.interval (1s)`},
		{"rise negative", `{` + be + `, "health": {"active": {"rise": -2}}}`, "health.active.rise: -2: must not be negative (0 is the default, 2)"},
		{"fall negative", `{` + be + `, "health": {"active": {"fall": -1}}}`, "health.active.fall: -1: must not be negative (0 is the default, 3)"},
		{"status range reversed", `{` + be + `, "health": {"active": {"status_min": 300, "status_max": 299}}}`, "health.active.status_min: 300: above health.active.status_max (299)"},
		{"status out of range", `{` + be + `, "health": {"active": {"status_max": 700}}}`, "health.active.status_max: 700: must be an HTTP status"},
		{"bad method", `{` + be + `, "health": {"active": {"method": "GE T"}}}`, `health.active.method: "GE T": not an HTTP method`},
		{"HEAD with body", `{` + be + `, "health": {"active": {"method": "HEAD", "body": "ok"}}}`, `health.active: health: Body "ok" set with Method HEAD`},
		{"bad header name", `{` + be + `, "health": {"active": {"headers": {"X A": "1"}}}}`, `health.active.headers["X A"]: not a valid header name`},
		{"bad header value", `{` + be + `, "health": {"active": {"headers": {"X-A": "1\r\nX-B: 2"}}}}`, `health.active.headers["X-A"]: "1\r\nX-B: 2": header values must not contain CR, LF or NUL`},
		{"bad host", `{` + be + `, "health": {"active": {"host": "a b"}}}`, `health.active.host: "a b": not a host name`},
		{"max fails below -1", `{` + be + `, "health": {"passive": {"max_fails": -2}}}`, "health.passive.max_fails: -2: must be -1 (off), 0 (the default, 1) or more"},
		{"fail timeout negative", `{` + be + `, "health": {"passive": {"fail_timeout": "-1s"}}}`, `health.passive.fail_timeout: "-1s": must not be negative (0 is the default, 10s)`},
		{"fail status 4xx", `{` + be + `, "health": {"passive": {"fail_statuses": [502, 404]}}}`, "health.passive.fail_statuses[1]: 404: must be a 5xx status"},

		// retries and the rest
		{"tries negative", `{` + be + `, "retries": {"tries": -1}}`, "retries.tries: -1: must not be negative (0 is the default, 3; 1 turns retries off)"},
		{"retry status 2xx", `{` + be + `, "retries": {"statuses": [200]}}`, "retries.statuses[0]: 200 is not a status to retry (want 5xx or 429)"},
		{"retry budget", `{` + be + `, "retries": {"budget": 1.5}}`, "retries.budget: 1.5: must be between 0 (no budget) and 1"},
		{"min retries negative", `{` + be + `, "retries": {"min_retries": -1}}`, "retries.min_retries: -1: must not be negative (0 is the default, 3)"},
		{"retry timeout negative", `{` + be + `, "retries": {"timeout": "-1s"}}`, `retries.timeout: "-1s": must not be negative`},
		{"body buffer below -1", `{` + be + `, "retries": {"body_buffer": -5}}`, "retries.body_buffer: -5: must be -1 (keep nothing), 0 (the default, 1 MiB) or more"},
		{"panic threshold", `{` + be + `, "panic_threshold": 101}`, "panic_threshold: 101: must be between 0 (off) and 100"},
		{"retry after negative", `{` + be + `, "retry_after": "-5s"}`, `retry_after: "-5s": must not be negative`},
		{"read header zero", `{` + be + `, "timeouts": {"read_header": "0s"}}`, `timeouts.read_header: "0s": must be positive: a server without it is open to slowloris`},
		{"write negative", `{` + be + `, "timeouts": {"write": "-1s"}}`, `timeouts.write: "-1s": must not be negative (0 is none)`},
		{"shutdown zero", `{` + be + `, "timeouts": {"shutdown": "0s"}}`, `timeouts.shutdown: "0s": must be positive`},
		{"dial zero", `{` + be + `, "timeouts": {"upstream_dial": "0s"}}`, `timeouts.upstream_dial: "0s": must be positive`},
		{"max header bytes", `{` + be + `, "max_header_bytes": 10}`, "max_header_bytes: 10: must be between 1024 and 16777216"},
		{"bad CIDR", `{` + be + `, "trusted_proxies": ["10.0.0.0/8", "10.0.0.0/33"]}`, `trusted_proxies[1]: "10.0.0.0/33": want a CIDR`},
		{"log level", `{` + be + `, "log_level": "verbose"}`, `log_level: "verbose": want debug, info, warn or error`},

		// status page
		{"status listen", `{` + be + `, "status": {"listen": "8081"}}`, `status.listen: "8081": want host:port`},
		{"status on the proxy's address", `{"listen": "127.0.0.1:8080", ` + be + `, "status": {"listen": "127.0.0.1:8080"}}`, `status.listen: "127.0.0.1:8080": the same address as listen`},
		{"actions without a token", `{` + be + `, "status": {"listen": "127.0.0.1:8081", "actions": true}}`, "status.actions: true: needs status.token or status.token_env: actions are never open to everyone"},
		{"actions without a listener", `{` + be + `, "status": {"actions": true, "token": "0123456789abcdef"}}`, "status.actions: true: needs status.listen"},
		{"short token", `{` + be + `, "status": {"listen": "127.0.0.1:8081", "actions": true, "token": "secret"}}`, "status.token: the token is too short: use at least 16 characters"},
		{"token and env", `{` + be + `, "status": {"listen": "127.0.0.1:8081", "actions": true, "token": "0123456789abcdef", "token_env": "X"}}`, "not both"},
		{"unset token env", `{` + be + `, "status": {"listen": "127.0.0.1:8081", "actions": true, "token_env": "TINYLB_TEST_UNSET_TOKEN"}}`, `status.token_env: "TINYLB_TEST_UNSET_TOKEN": the environment variable is empty or unset`},
		{"token without actions", `{` + be + `, "status": {"listen": "127.0.0.1:8081", "token": "0123456789abcdef"}}`, "status: a token without status.actions: true has no use"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.file)
			c, err := load([]string{"-config", path})
			if err == nil {
				t.Fatalf("load(%s) = %+v, want an error containing %q", tt.file, c, tt.want)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, path) && tt.want != "no backends" {
				t.Errorf("error %q does not start with the file's path %s", msg, path)
			}
			if !strings.Contains(msg, tt.want) {
				t.Errorf("load(%s)\nerror %q\nwant it to contain %q", tt.file, msg, tt.want)
			}
			if strings.Contains(msg, "secret") {
				t.Errorf("error %q reveals a secret", msg)
			}
		})
	}

	if _, err := load([]string{"-config", filepath.Join(t.TempDir(), "missing.json")}); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("missing file: error %v", err)
	}
}

func TestChangedSettings(t *testing.T) {
	old := defaults(backendConfig{URL: "http://127.0.0.1:9001", Weight: 1})
	a := activeConfig{Path: "/healthz"}
	old.Health.Active = &a

	same := old
	same.Backends = []backendConfig{{URL: "http://127.0.0.1:9002", Weight: 5}}
	same.LogLevel = "debug"
	same.TrustedProxies = []string{} // the same as none
	a2 := a
	same.Health.Active = &a2
	if got := changedSettings(old, same); len(got) != 0 {
		t.Errorf("changedSettings of backends and log level = %q, want none", got)
	}

	next := same
	next.Listen = "127.0.0.1:9999"
	next.Strategy = "swrr"
	a3 := a
	a3.Interval = duration(time.Second)
	a3.Headers = map[string]string{"X": "1"}
	next.Health.Active = &a3
	next.Health.Passive.FailStatuses = []int{502}
	next.Status.Listen = "127.0.0.1:8081"
	want := []string{"listen", "strategy", "health.active.interval", "health.active.headers", "health.passive.fail_statuses", "status.listen"}
	if got := changedSettings(old, next); !reflect.DeepEqual(got, want) {
		t.Errorf("changedSettings = %q, want %q", got, want)
	}
	next.Health.Active = nil
	if got := changedSettings(old, next); !reflect.DeepEqual(got[2], "health.active") {
		t.Errorf("changedSettings with active checks off = %q, want health.active third", got)
	}
}
