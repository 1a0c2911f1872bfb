package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
)

// config is the proxy's configuration. Its JSON form is the schema of the
// -config file (see lb.example.json); the command-line flags set some of
// its fields. defaultConfig holds the defaults: a file only changes the
// fields it names, and a flag only the fields it stands for, when it is
// given on the command line.
type config struct {
	Listen         string          `json:"listen"`
	Strategy       string          `json:"strategy"` // rr, swrr, leastconn or hash
	HashKey        string          `json:"hash_key"` // with hash: header:NAME, cookie:NAME, query:NAME, ip or path
	Backends       []backendConfig `json:"backends"`
	Health         healthConfig    `json:"health"`
	Retries        retryConfig     `json:"retries"`
	SlowStart      duration        `json:"slow_start"`      // 0: off
	PanicThreshold int             `json:"panic_threshold"` // percent; 0: off
	RetryAfter     duration        `json:"retry_after"`     // 0: no Retry-After header
	Timeouts       timeoutConfig   `json:"timeouts"`
	MaxHeaderBytes int             `json:"max_header_bytes"`
	TrustedProxies []string        `json:"trusted_proxies"` // CIDRs or addresses
	Status         statusConfig    `json:"status"`
	LogLevel       string          `json:"log_level"` // debug, info, warn or error

	file string // the -config file, "" without one
}

// backendConfig is one backend: an entry of "backends", or a -backend flag.
type backendConfig struct {
	URL    string `json:"url"`
	Weight int    `json:"weight"` // default 1
	Backup bool   `json:"backup"`
}

type healthConfig struct {
	Active  *activeConfig `json:"active"` // nil: no active checks
	Passive passiveConfig `json:"passive"`
}

// activeConfig is an active HTTP health check (health.HTTPCheck).
type activeConfig struct {
	Path      string            `json:"path"`
	Method    string            `json:"method"` // "": GET
	Interval  duration          `json:"interval"`
	Timeout   duration          `json:"timeout"` // 0: 2s, or Interval if shorter
	Rise      int               `json:"rise"`
	Fall      int               `json:"fall"`
	StatusMin int               `json:"status_min"`
	StatusMax int               `json:"status_max"`
	Host      string            `json:"host"`    // "": the backend's host
	Headers   map[string]string `json:"headers"` // extra request headers
	Body      string            `json:"body"`    // "": the body is not read
}

// passiveConfig is passive health checking (health.Passive), nginx's
// max_fails and fail_timeout.
type passiveConfig struct {
	MaxFails     int      `json:"max_fails"` // 0: off
	FailTimeout  duration `json:"fail_timeout"`
	FailStatuses []int    `json:"fail_statuses"`
}

// retryConfig is the lb.RetryPolicy.
type retryConfig struct {
	Tries         int      `json:"tries"`   // attempts, the first included; 1: no retries
	Timeout       duration `json:"timeout"` // 0: no bound
	Statuses      []int    `json:"statuses"`
	NonIdempotent bool     `json:"non_idempotent"`
	BodyBuffer    int64    `json:"body_buffer"` // bytes; 0 keeps nothing
}

type timeoutConfig struct {
	ReadHeader             duration `json:"read_header"`
	Read                   duration `json:"read"`  // 0: none
	Write                  duration `json:"write"` // 0: none
	Idle                   duration `json:"idle"`
	Shutdown               duration `json:"shutdown"`
	UpstreamDial           duration `json:"upstream_dial"`
	UpstreamResponseHeader duration `json:"upstream_response_header"` // 0: none
}

// statusConfig is the status page's listener.
type statusConfig struct {
	Listen   string `json:"listen"`    // "": no status page
	Actions  bool   `json:"actions"`   // drain/maintenance/weight forms, behind the token
	Token    string `json:"token"`     // the token of the actions, or
	TokenEnv string `json:"token_env"` // the environment variable that holds it
}

// Defaults.
const (
	defaultListen          = "127.0.0.1:8080"
	defaultStrategy        = "rr"
	defaultHealthPath      = "/healthz"
	defaultHealthInterval  = 5 * time.Second
	defaultMaxFails        = 1
	defaultFailTimeout     = 10 * time.Second
	defaultRetries         = 2 // -retries: retries after the first attempt
	defaultShutdownTimeout = 10 * time.Second
	defaultMaxHeaderBytes  = 64 << 10
	minStatusToken         = 16
)

// defaultConfig returns the configuration of no file and no flags but
// -backend.
func defaultConfig() config {
	return config{
		Listen:   defaultListen,
		Strategy: defaultStrategy,
		Health: healthConfig{Passive: passiveConfig{
			MaxFails:    defaultMaxFails,
			FailTimeout: duration(defaultFailTimeout),
		}},
		Retries: retryConfig{Tries: defaultRetries + 1, BodyBuffer: 1 << 20},
		Timeouts: timeoutConfig{
			// Slowloris: a client gets this long to send its request
			// headers. No Read or Write timeout: they would cut long
			// uploads, streamed responses and upgraded connections.
			ReadHeader:             duration(10 * time.Second),
			Idle:                   duration(2 * time.Minute),
			Shutdown:               duration(defaultShutdownTimeout),
			UpstreamDial:           duration(5 * time.Second),
			UpstreamResponseHeader: duration(30 * time.Second),
		},
		MaxHeaderBytes: defaultMaxHeaderBytes,
		LogLevel:       "info",
	}
}

// defaultActive returns the active check's settings before the file's
// "health.active" object is applied, or for -health-path.
func defaultActive() activeConfig {
	return activeConfig{
		Path:      defaultHealthPath,
		Interval:  duration(defaultHealthInterval),
		Rise:      2,
		Fall:      3,
		StatusMin: 200,
		StatusMax: 399,
	}
}

// UnmarshalJSON starts from the defaults, so that a field left out keeps
// its default and one given as 0 is an error.
func (a *activeConfig) UnmarshalJSON(data []byte) error {
	type plain activeConfig
	p := plain(defaultActive())
	if err := decodeStrict(data, &p); err != nil {
		return err
	}
	*a = activeConfig(p)
	return nil
}

// UnmarshalJSON starts from weight 1, so that "weight": 0 is an error.
func (b *backendConfig) UnmarshalJSON(data []byte) error {
	type plain backendConfig
	p := plain{Weight: 1}
	if err := decodeStrict(data, &p); err != nil {
		return err
	}
	*b = backendConfig(p)
	return nil
}

func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// duration is a time.Duration written in JSON as a Go duration string,
// such as "2s" or "1m30s".
type duration time.Duration

func (d duration) D() time.Duration { return time.Duration(d) }

func (d duration) String() string { return time.Duration(d).String() }

func (d duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

func (d *duration) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("%s: invalid duration: want a string such as \"2s\"", data)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q: invalid duration", s)
	}
	*d = duration(v)
	return nil
}

// fieldError is a bad setting: where it is (a path in the config file such
// as backends[2].weight, or a flag such as -strategy), the value as written
// ("" when not worth repeating) and what is wrong with it.
type fieldError struct {
	path, value, msg string
}

func (e *fieldError) Error() string {
	path := e.path
	if path == "" {
		path = "(top level)"
	}
	if e.value == "" {
		return path + ": " + e.msg
	}
	return path + ": " + e.value + ": " + e.msg
}

func badf(path, value, format string, a ...any) *fieldError {
	return &fieldError{path: path, value: value, msg: fmt.Sprintf(format, a...)}
}

func quote(s string) string        { return strconv.Quote(s) }
func quoteD(d duration) string     { return strconv.Quote(d.String()) }
func index(p string, i int) string { return p + "[" + strconv.Itoa(i) + "]" }

// flagValues are the command-line flags. Each one that is given overrides
// the setting it stands for (flagPaths).
type flagValues struct {
	config             string
	listen             string
	strategy           string
	hashKey            string
	backends           []string // raw -backend values, parsed by apply
	healthPath         string
	healthInterval     time.Duration
	passiveMaxFails    int
	passiveFailTimeout time.Duration
	retries            int
	slowStart          time.Duration
	shutdownTimeout    time.Duration
}

// flagPaths maps each flag to the setting it overrides, so that an invalid
// value is reported under the flag's name.
var flagPaths = map[string]string{
	"listen":               "listen",
	"strategy":             "strategy",
	"hash-key":             "hash_key",
	"backend":              "backends",
	"health-path":          "health.active.path",
	"health-interval":      "health.active.interval",
	"passive-max-fails":    "health.passive.max_fails",
	"passive-fail-timeout": "health.passive.fail_timeout",
	"retries":              "retries.tries",
	"slow-start":           "slow_start",
	"shutdown-timeout":     "timeouts.shutdown",
}

const usageHead = `Usage: %[1]s -backend URL[=WEIGHT] [-backend ...] [flags]
       %[1]s -config lb.json [flags]

%[1]s is a standalone HTTP load balancer built on github.com/tinylb/lb.
It serves on -listen and spreads requests over the backends.

The JSON config file of -config holds every setting (see lb.example.json);
a flag given on the command line overrides the setting it stands for.
SIGHUP re-reads the file and applies its backends and log level in place;
SIGINT or SIGTERM stops gracefully.

Examples:
  %[1]s -listen 127.0.0.1:8080 -strategy swrr \
      -backend http://127.0.0.1:9001=5 -backend http://127.0.0.1:9002
  %[1]s -strategy hash -hash-key header:X-User -health-path /healthz \
      -backend http://10.0.0.1:8080 -backend http://10.0.0.2:8080
  %[1]s -config /etc/tinylb/lb.json -listen :8081

Flags:
`

// newFlagSet returns the flag set that fills v. Its output is discarded:
// load returns errors, and main prints them.
func newFlagSet(name string, v *flagValues) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&v.config, "config", "",
		"JSON config `file` (see lb.example.json); flags given on the command line override\n"+
			"its settings, and SIGHUP re-reads it")
	fs.StringVar(&v.listen, "listen", defaultListen, "`address` to serve on")
	fs.StringVar(&v.strategy, "strategy", defaultStrategy,
		"balancing `strategy`: rr (round robin), swrr (smooth weighted round robin),\n"+
			"leastconn (weighted least connections) or hash (consistent hash, needs -hash-key)")
	fs.StringVar(&v.hashKey, "hash-key", "",
		"`key` that -strategy hash hashes: header:NAME, cookie:NAME, query:NAME, ip (client address)\n"+
			"or path; a request with an empty key is balanced round robin")
	fs.Func("backend",
		"a backend, repeatable: an http or https `URL[=WEIGHT]`, where WEIGHT is an integer from\n"+
			"1 to "+strconv.Itoa(lb.MaxWeight)+" (default 1); the text after the last = is the weight, so a URL\n"+
			"that contains = needs an explicit weight. Replaces the backends of -config",
		func(s string) error {
			// Parsed by apply, which quotes it without credentials: the
			// flag package would quote it as it is.
			v.backends = append(v.backends, s)
			return nil
		})
	fs.StringVar(&v.healthPath, "health-path", "",
		"`path` to check each backend with GET, expecting a 2xx or 3xx status (rise 2, fall 3);\n"+
			"empty turns active health checks off")
	fs.DurationVar(&v.healthInterval, "health-interval", defaultHealthInterval,
		"`duration` between health checks of a backend (needs -health-path)")
	fs.IntVar(&v.passiveMaxFails, "passive-max-fails", defaultMaxFails,
		"failed requests within -passive-fail-timeout that take a backend out of rotation for\n"+
			"-passive-fail-timeout (nginx's max_fails); 0 turns passive health checks off")
	fs.DurationVar(&v.passiveFailTimeout, "passive-fail-timeout", defaultFailTimeout,
		"sliding window for -passive-max-fails, and how long a backend stays out (nginx's fail_timeout)")
	fs.IntVar(&v.retries, "retries", defaultRetries,
		"how many times a failed request may be retried on another backend, when that is safe;\n"+
			"0 turns retries off")
	fs.DurationVar(&v.slowStart, "slow-start", 0,
		"`duration` over which a backend that comes up ramps to its full share; 0 turns slow start off")
	fs.DurationVar(&v.shutdownTimeout, "shutdown-timeout", defaultShutdownTimeout,
		"on SIGINT or SIGTERM, how long requests in flight get to finish")
	return fs
}

// usage writes the help text of the flag set to w.
func usage(w io.Writer, name string) {
	fmt.Fprintf(w, usageHead, name)
	fs := newFlagSet(name, new(flagValues))
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// load parses the command-line arguments (without the program name),
// reads the -config file if one is named, applies the flags given over it
// and checks the result completely, so that a config it returns starts
// without errors of its own. -h and -help return [flag.ErrHelp]. A reload
// calls it again with the same arguments.
func load(args []string) (config, error) {
	var v flagValues
	fs := newFlagSet("tinylb", &v)
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q: backends are given with -backend URL", fs.Arg(0))
	}
	set := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	c := defaultConfig()
	if v.config != "" {
		if err := c.readFile(v.config); err != nil {
			return config{}, err
		}
	}
	if err := c.applyFlags(&v, set); err != nil {
		return config{}, err
	}
	if err := c.validate(); err != nil {
		var fe *fieldError
		if !errors.As(err, &fe) {
			return config{}, err
		}
		// Name the flag that set the bad value (or that would have, without
		// a file), or else the file.
		for name, path := range flagPaths {
			if (set[name] || c.file == "") && (fe.path == path || strings.HasPrefix(fe.path, path+".") || strings.HasPrefix(fe.path, path+"[")) {
				fe.path = "-" + name
				return config{}, fe
			}
		}
		if c.file != "" {
			return config{}, fmt.Errorf("%s: %w", c.file, fe)
		}
		return config{}, fe
	}
	return c, nil
}

// readFile sets the fields of c that the JSON config file at path names.
// Unknown fields are errors; so is anything after the top-level object.
func (c *config) readFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	c.file = path
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		var se *json.SyntaxError
		switch {
		case errors.Is(err, io.EOF):
			return fmt.Errorf("%s: empty file: want a JSON object", path)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return fmt.Errorf("%s: unexpected end of file", path)
		case errors.As(err, &se):
			line, col := position(data, se.Offset-1) // Offset is just past the bad byte
			return fmt.Errorf("%s:%d:%d: invalid JSON: %v", path, line, col, se)
		}
		// encoding/json names neither the path of an unknown field nor the
		// field of a value its UnmarshalJSON rejects: find them.
		if fe := explain(data, reflect.TypeFor[config]()); fe != nil {
			return fmt.Errorf("%s: %w", path, fe)
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	end := dec.InputOffset()
	if _, err := dec.Token(); err != io.EOF {
		end += int64(len(data[end:]) - len(bytes.TrimLeft(data[end:], " \t\r\n")))
		line, col := position(data, end)
		return fmt.Errorf("%s:%d:%d: unexpected data after the top-level object", path, line, col)
	}
	return nil
}

// position returns the line and column of byte offset off in data.
func position(data []byte, off int64) (line, col int) {
	off = min(max(off, 0), int64(len(data)))
	before := data[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(off) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

var durationType = reflect.TypeFor[duration]()

// explain walks the JSON in data along type t (the way encoding/json
// decodes it, matching names case-insensitively) and returns the first
// value that does not fit, with its path, or nil.
func explain(data []byte, t reflect.Type) *fieldError {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return nil
	}
	return walk("", v, t)
}

func walk(path string, v any, t reflect.Type) *fieldError {
	if v == nil {
		return nil // null leaves a field as it is
	}
	want := func(what string) *fieldError { return badf(path, jsonText(v), "want %s", what) }
	if t == durationType {
		s, ok := v.(string)
		if !ok {
			return badf(path, jsonText(v), `invalid duration: want a string such as "2s"`)
		}
		if _, err := time.ParseDuration(s); err != nil {
			return badf(path, quote(s), "invalid duration")
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		return walk(path, v, t.Elem())
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return want("an object")
		}
		var names []string
		for i := range t.NumField() {
			if n := jsonName(t.Field(i)); n != "" {
				names = append(names, n)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			i := slices.Index(names, k)
			if i < 0 {
				i = slices.IndexFunc(names, func(n string) bool { return strings.EqualFold(n, k) })
			}
			sub := k
			if path != "" {
				sub = path + "." + k
			}
			if i < 0 {
				return badf(sub, "", "unknown field (want %s)", orList(names))
			}
			f, _ := fieldByJSONName(t, names[i])
			if err := walk(sub, m[k], f.Type); err != nil {
				return err
			}
		}
	case reflect.Slice:
		a, ok := v.([]any)
		if !ok {
			return want("an array")
		}
		for i, e := range a {
			if err := walk(index(path, i), e, t.Elem()); err != nil {
				return err
			}
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return want("an object")
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if err := walk(path+"["+quote(k)+"]", m[k], t.Elem()); err != nil {
				return err
			}
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			return want("a string")
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return want("true or false")
		}
	case reflect.Int, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			return want("an integer")
		}
		i, err := n.Int64()
		if err != nil || reflect.New(t).Elem().OverflowInt(i) {
			return want("an integer")
		}
	}
	return nil
}

// jsonText is v, as decoded with UseNumber, written back briefly.
func jsonText(v any) string {
	switch v.(type) {
	case map[string]any:
		return "{...}"
	case []any:
		return "[...]"
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func jsonName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "-" {
		return ""
	}
	if name == "" {
		return f.Name
	}
	return name
}

func fieldByJSONName(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if jsonName(t.Field(i)) == name {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

// orList writes names as "a, b or c".
func orList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// applyFlags sets the fields of c that the flags given on the command line
// (set) stand for. It checks what only makes sense of a flag.
func (c *config) applyFlags(v *flagValues, set map[string]bool) error {
	if set["listen"] {
		c.Listen = v.listen
	}
	if set["strategy"] {
		c.Strategy = v.strategy
	}
	if set["hash-key"] {
		c.HashKey = v.hashKey
	}
	if set["backend"] {
		c.Backends = nil
		for _, raw := range v.backends {
			b, err := parseBackend(raw)
			if err != nil {
				return err
			}
			c.Backends = append(c.Backends, b)
		}
	}
	if set["health-path"] {
		if v.healthPath == "" {
			c.Health.Active = nil
		} else {
			if c.Health.Active == nil {
				a := defaultActive()
				c.Health.Active = &a
			}
			c.Health.Active.Path = v.healthPath
		}
	}
	if set["health-interval"] {
		if c.Health.Active == nil {
			return errors.New("-health-interval needs -health-path (or health.active in the -config file)")
		}
		c.Health.Active.Interval = duration(v.healthInterval)
	}
	if set["passive-max-fails"] {
		if v.passiveMaxFails < 0 {
			return badf("-passive-max-fails", strconv.Itoa(v.passiveMaxFails), "must be 0 (off) or more")
		}
		c.Health.Passive.MaxFails = v.passiveMaxFails
	}
	if set["passive-fail-timeout"] {
		if c.Health.Passive.MaxFails == 0 {
			return errors.New("-passive-fail-timeout has no effect with -passive-max-fails 0")
		}
		c.Health.Passive.FailTimeout = duration(v.passiveFailTimeout)
	}
	if set["retries"] {
		if v.retries < 0 {
			return badf("-retries", strconv.Itoa(v.retries), "must be 0 (off) or more")
		}
		c.Retries.Tries = v.retries + 1
	}
	if set["slow-start"] {
		c.SlowStart = duration(v.slowStart)
	}
	if set["shutdown-timeout"] {
		c.Timeouts.Shutdown = duration(v.shutdownTimeout)
	}
	return nil
}

// parseBackend parses the value of a -backend flag: a URL, optionally
// followed by "=" and a weight.
func parseBackend(s string) (backendConfig, error) {
	b := backendConfig{URL: s, Weight: 1}
	if i := strings.LastIndexByte(s, '='); i >= 0 {
		b.URL = s[:i]
		w := s[i+1:]
		if w == "" {
			return backendConfig{}, fmt.Errorf("invalid -backend %q: missing weight after \"=\"", redact(s))
		}
		n, err := strconv.Atoi(w)
		if err != nil {
			return backendConfig{}, fmt.Errorf("invalid -backend %q: weight %q is not an integer", redact(s), w)
		}
		b.Weight = n
	}
	if !strings.Contains(b.URL, "://") {
		return backendConfig{}, fmt.Errorf("invalid -backend %q: want an http:// or https:// URL", redact(s))
	}
	// Let the library judge the URL and the weight. Its errors quote the
	// URL without credentials.
	if _, err := b.backend(); err != nil {
		return backendConfig{}, fmt.Errorf("invalid -backend: %w", err)
	}
	return b, nil
}

// redact hides the credentials of a URL that has them.
func redact(s string) string {
	_, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	authority := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority = rest[:i]
	}
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		return s[:len(s)-len(rest)] + "xxxxx" + rest[i:]
	}
	return s
}

// backend returns a new lb.Backend of b.
func (b backendConfig) backend() (*lb.Backend, error) {
	opts := []lb.BackendOption{lb.WithWeight(b.Weight)}
	if b.Backup {
		opts = append(opts, lb.AsBackup())
	}
	return lb.NewBackend(b.URL, opts...)
}

// urlProblem returns what the library finds wrong with a backend URL,
// without the "lb: invalid backend: URL ..." it starts with.
func urlProblem(err error) string {
	msg := err.Error()
	rest, ok := strings.CutPrefix(msg, lb.ErrInvalidBackend.Error()+": URL ")
	if !ok {
		return msg
	}
	q, err2 := strconv.QuotedPrefix(rest)
	if err2 != nil {
		return msg
	}
	return strings.TrimPrefix(rest[len(q):], ": ")
}

// validate reports the first bad setting of c as a *fieldError with its
// path in the config file. Where the library has a Validate method, it has
// the last word.
func (c *config) validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return badf("listen", quote(c.Listen), "want host:port, e.g. 127.0.0.1:8080 or :8080")
	}
	switch c.Strategy {
	case "rr", "swrr", "leastconn":
		if c.HashKey != "" {
			return badf("hash_key", quote(c.HashKey), "only used with strategy hash, not %s", c.Strategy)
		}
	case "hash":
		if c.HashKey == "" {
			return badf("hash_key", "", "strategy hash needs a hash key: header:NAME, cookie:NAME, query:NAME, ip or path")
		}
		if _, err := parseHashKey(c.HashKey); err != nil {
			return badf("hash_key", quote(c.HashKey), "%v", err)
		}
	default:
		return badf("strategy", quote(c.Strategy), "unknown strategy: want rr, swrr, leastconn or hash")
	}

	if len(c.Backends) == 0 {
		return errors.New("no backends: give at least one -backend URL[=WEIGHT], or a \"backends\" list in the -config file")
	}
	seen := make(map[string]int, len(c.Backends))
	for i, b := range c.Backends {
		p := index("backends", i)
		be, err := lb.NewBackend(b.URL)
		if err != nil {
			return badf(p+".url", quote(redact(b.URL)), "%s", urlProblem(err))
		}
		if j, dup := seen[be.Key()]; dup {
			return badf(p+".url", quote(b.URL), "duplicate backend: the same as backends[%d]", j)
		}
		seen[be.Key()] = i
		if b.Weight < 1 || b.Weight > lb.MaxWeight {
			return badf(p+".weight", strconv.Itoa(b.Weight), "must be between 1 and %d", lb.MaxWeight)
		}
	}

	if a := c.Health.Active; a != nil {
		if err := a.validate("health.active"); err != nil {
			return err
		}
	}
	if err := c.Health.Passive.validate("health.passive"); err != nil {
		return err
	}
	if err := c.Retries.validate("retries"); err != nil {
		return err
	}

	switch {
	case c.SlowStart < 0:
		return badf("slow_start", quoteD(c.SlowStart), "must not be negative")
	case c.PanicThreshold < 0 || c.PanicThreshold > 100:
		return badf("panic_threshold", strconv.Itoa(c.PanicThreshold), "must be between 0 (off) and 100")
	case c.RetryAfter < 0:
		return badf("retry_after", quoteD(c.RetryAfter), "must not be negative")
	}

	t := c.Timeouts
	for _, d := range []struct {
		name     string
		v        duration
		zeroOK   bool
		zeroNote string
	}{
		{"read_header", t.ReadHeader, false, "a server without it is open to slowloris"},
		{"read", t.Read, true, ""},
		{"write", t.Write, true, ""},
		{"idle", t.Idle, false, ""},
		{"shutdown", t.Shutdown, false, ""},
		{"upstream_dial", t.UpstreamDial, false, ""},
		{"upstream_response_header", t.UpstreamResponseHeader, true, ""},
	} {
		switch {
		case d.v < 0 && d.zeroOK:
			return badf("timeouts."+d.name, quoteD(d.v), "must not be negative (0 is none)")
		case d.v <= 0 && !d.zeroOK && d.zeroNote != "":
			return badf("timeouts."+d.name, quoteD(d.v), "must be positive: %s", d.zeroNote)
		case d.v <= 0 && !d.zeroOK:
			return badf("timeouts."+d.name, quoteD(d.v), "must be positive")
		}
	}
	if c.MaxHeaderBytes < 1<<10 || c.MaxHeaderBytes > 16<<20 {
		return badf("max_header_bytes", strconv.Itoa(c.MaxHeaderBytes), "must be between 1024 and %d", 16<<20)
	}

	for i, s := range c.TrustedProxies {
		if _, err := parsePrefix(s); err != nil {
			return badf(index("trusted_proxies", i), quote(s), "want a CIDR such as 10.0.0.0/8, or an IP address")
		}
	}

	if err := c.Status.validate("status", c.Listen); err != nil {
		return err
	}

	if _, err := parseLevel(c.LogLevel); err != nil {
		return badf("log_level", quote(c.LogLevel), "want debug, info, warn or error")
	}
	return nil
}

func (a *activeConfig) validate(p string) error {
	switch {
	case !strings.HasPrefix(a.Path, "/"):
		return badf(p+".path", quote(a.Path), "must start with /")
	case a.Method != "" && !isToken(a.Method):
		return badf(p+".method", quote(a.Method), "not an HTTP method")
	case a.Interval <= 0:
		return badf(p+".interval", quoteD(a.Interval), "must be positive")
	case a.Timeout < 0:
		return badf(p+".timeout", quoteD(a.Timeout), "must not be negative (0 is 2s, or the interval if shorter)")
	case a.Timeout > a.Interval:
		return badf(p+".timeout", quoteD(a.Timeout), "longer than %s.interval (%v)", p, a.Interval)
	case a.Rise < 1:
		return badf(p+".rise", strconv.Itoa(a.Rise), "must be at least 1")
	case a.Fall < 1:
		return badf(p+".fall", strconv.Itoa(a.Fall), "must be at least 1")
	case a.StatusMin < 100 || a.StatusMin > 599:
		return badf(p+".status_min", strconv.Itoa(a.StatusMin), "must be an HTTP status, 100 to 599")
	case a.StatusMax < 100 || a.StatusMax > 599:
		return badf(p+".status_max", strconv.Itoa(a.StatusMax), "must be an HTTP status, 100 to 599")
	case a.StatusMin > a.StatusMax:
		return badf(p+".status_min", strconv.Itoa(a.StatusMin), "above %s.status_max (%d)", p, a.StatusMax)
	case strings.ContainsFunc(a.Host, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '/' }):
		return badf(p+".host", quote(a.Host), "not a host name")
	}
	for _, k := range slices.Sorted(maps.Keys(a.Headers)) {
		hp := p + ".headers[" + quote(k) + "]"
		if !isToken(k) {
			return badf(hp, "", "not a valid header name")
		}
		if strings.ContainsAny(a.Headers[k], "\r\n\x00") {
			return badf(hp, quote(a.Headers[k]), "header values must not contain CR, LF or NUL")
		}
	}
	if err := a.check().Validate(); err != nil {
		return badf(p, "", "%v", err)
	}
	return nil
}

func (pc *passiveConfig) validate(p string) error {
	switch {
	case pc.MaxFails < 0:
		return badf(p+".max_fails", strconv.Itoa(pc.MaxFails), "must be 0 (off) or more")
	case pc.FailTimeout <= 0:
		return badf(p+".fail_timeout", quoteD(pc.FailTimeout), "must be positive")
	}
	for i, s := range pc.FailStatuses {
		if s < 500 || s > 599 {
			return badf(index(p+".fail_statuses", i), strconv.Itoa(s), "must be a 5xx status")
		}
	}
	if err := pc.passive().Validate(); err != nil {
		return badf(p, "", "%v", err)
	}
	return nil
}

func (r *retryConfig) validate(p string) error {
	switch {
	case r.Tries < 1:
		return badf(p+".tries", strconv.Itoa(r.Tries), "must be at least 1 (1 turns retries off)")
	case r.Timeout < 0:
		return badf(p+".timeout", quoteD(r.Timeout), "must not be negative (0 is no bound)")
	case r.BodyBuffer < 0:
		return badf(p+".body_buffer", strconv.FormatInt(r.BodyBuffer, 10), "must not be negative (0 keeps nothing)")
	}
	for i, s := range r.Statuses {
		if s < 400 || s > 599 {
			return badf(index(p+".statuses", i), strconv.Itoa(s), "must be a 4xx or 5xx status")
		}
	}
	if err := r.policy().Validate(); err != nil {
		return badf(p, "", "%v", err)
	}
	return nil
}

func (s *statusConfig) validate(p, mainListen string) error {
	if s.Listen == "" {
		switch {
		case s.Actions:
			return badf(p+".actions", "true", "needs %s.listen", p)
		case s.Token != "" || s.TokenEnv != "":
			return badf(p, "", "token set without %s.listen and %s.actions", p, p)
		}
		return nil
	}
	if _, port, err := net.SplitHostPort(s.Listen); err != nil {
		return badf(p+".listen", quote(s.Listen), "want host:port, e.g. 127.0.0.1:8081")
	} else if s.Listen == mainListen && port != "0" {
		return badf(p+".listen", quote(s.Listen), "the same address as listen")
	}
	switch {
	case !s.Actions && (s.Token != "" || s.TokenEnv != ""):
		return badf(p, "", "a token without %s.actions: true has no use", p)
	case !s.Actions:
		return nil
	case s.Token != "" && s.TokenEnv != "":
		return badf(p+".token_env", quote(s.TokenEnv), "give %s.token or %s.token_env, not both", p, p)
	case s.Token == "" && s.TokenEnv == "":
		return badf(p+".actions", "true", "needs %s.token or %s.token_env: actions are never open to everyone", p, p)
	case s.TokenEnv != "" && os.Getenv(s.TokenEnv) == "":
		return badf(p+".token_env", quote(s.TokenEnv), "the environment variable is empty or unset")
	}
	if len(s.token()) < minStatusToken {
		where := p + ".token"
		if s.TokenEnv != "" {
			where = p + ".token_env"
		}
		// Never repeat the token itself.
		return badf(where, "", "the token is too short: use at least %d characters", minStatusToken)
	}
	return nil
}

// token returns the token of the status actions.
func (s *statusConfig) token() string {
	if s.TokenEnv != "" {
		return os.Getenv(s.TokenEnv)
	}
	return s.Token
}

// authorized reports whether r carries the token: as a bearer token, or as
// the password of HTTP basic authentication (what a browser can send).
func authorized(r *http.Request, token string) bool {
	got := ""
	if _, pass, ok := r.BasicAuth(); ok {
		got = pass
	} else if scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		got = strings.TrimSpace(cred)
	}
	if got == "" || token == "" {
		return false
	}
	// Compare digests: constant time whatever the lengths.
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// parsePrefix parses a CIDR, or an address as a prefix of its own.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q", s)
}

// level returns the log level of c, which must have passed validate.
func (c *config) level() slog.Level {
	l, _ := parseLevel(c.LogLevel)
	return l
}

// isToken reports whether s is an RFC 9110 token, as a method or a header
// name must be.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b <= ' ' || b >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, b) >= 0 {
			return false
		}
	}
	return true
}

// parseHashKey turns a hash key setting into a key function.
func parseHashKey(s string) (lb.KeyFunc, error) {
	kind, name, hasName := strings.Cut(s, ":")
	switch {
	case kind == "ip" && !hasName:
		return lb.ClientIPKey(), nil
	case kind == "path" && !hasName:
		return lb.PathKey(), nil
	case (kind == "header" || kind == "cookie" || kind == "query") && !hasName:
		return nil, fmt.Errorf("want %s:NAME", kind)
	case hasName && name == "":
		return nil, fmt.Errorf("empty name after %q", kind+":")
	case kind == "header":
		return lb.HeaderKey(name), nil
	case kind == "cookie":
		return lb.CookieKey(name), nil
	case kind == "query":
		return lb.QueryKey(name), nil
	}
	return nil, errors.New("want header:NAME, cookie:NAME, query:NAME, ip or path")
}

// newStrategy returns the configured strategy. c must have passed validate.
func (c *config) newStrategy() lb.Strategy {
	switch c.Strategy {
	case "swrr":
		return lb.SmoothWeighted()
	case "leastconn":
		return lb.LeastConn()
	case "hash":
		key, _ := parseHashKey(c.HashKey)
		return lb.ConsistentHash(key)
	}
	return lb.RoundRobin()
}

// check returns the health.HTTPCheck of a.
func (a *activeConfig) check() *health.HTTPCheck {
	hc := &health.HTTPCheck{
		Path:      a.Path,
		Method:    a.Method,
		Host:      a.Host,
		Interval:  a.Interval.D(),
		Timeout:   a.Timeout.D(),
		Rise:      a.Rise,
		Fall:      a.Fall,
		StatusMin: a.StatusMin,
		StatusMax: a.StatusMax,
		Body:      a.Body,
	}
	if len(a.Headers) > 0 {
		hc.Header = make(http.Header, len(a.Headers))
		for k, v := range a.Headers {
			hc.Header.Set(k, v)
		}
	}
	return hc
}

func (pc *passiveConfig) passive() health.Passive {
	return health.Passive{
		MaxFails:     pc.MaxFails,
		FailTimeout:  pc.FailTimeout.D(),
		FailStatuses: pc.FailStatuses,
	}
}

func (r *retryConfig) policy() lb.RetryPolicy {
	p := lb.RetryPolicy{
		Tries:         r.Tries,
		Timeout:       r.Timeout.D(),
		Statuses:      r.Statuses,
		NonIdempotent: r.NonIdempotent,
		BodyBuffer:    r.BodyBuffer,
	}
	if p.BodyBuffer == 0 {
		p.BodyBuffer = -1 // the library's 0 is its default, 1 MiB
	}
	return p
}

// newBackends returns new lb.Backends of the configured backends. c must
// have passed validate.
func (c *config) newBackends() ([]*lb.Backend, error) {
	list := make([]*lb.Backend, 0, len(c.Backends))
	for _, spec := range c.Backends {
		be, err := spec.backend()
		if err != nil {
			return nil, err
		}
		list = append(list, be)
	}
	return list, nil
}

// newTransport returns the transport to the backends: the library's
// default with the configured dial and response-header timeouts.
func (c *config) newTransport() *http.Transport {
	tr := lb.NewTransport()
	tr.DialContext = (&net.Dialer{Timeout: c.Timeouts.UpstreamDial.D(), KeepAlive: 30 * time.Second}).DialContext
	tr.ResponseHeaderTimeout = c.Timeouts.UpstreamResponseHeader.D()
	return tr
}

// options returns the balancer options of c. c must have passed validate.
func (c *config) options(log *slog.Logger, tr http.RoundTripper) []lb.Option {
	opts := []lb.Option{
		lb.WithLogger(log),
		lb.WithTransport(tr),
		lb.WithRetry(c.Retries.policy()),
	}
	if c.Health.Active != nil {
		opts = append(opts, lb.WithHealthCheck(c.Health.Active.check()))
	}
	if c.Health.Passive.MaxFails > 0 {
		opts = append(opts, lb.WithPassiveHealth(c.Health.Passive.passive()))
	}
	if c.SlowStart > 0 {
		opts = append(opts, lb.WithSlowStart(c.SlowStart.D()))
	}
	if c.PanicThreshold > 0 {
		opts = append(opts, lb.WithPanicThreshold(c.PanicThreshold))
	}
	if c.RetryAfter > 0 {
		opts = append(opts, lb.WithRetryAfter(c.RetryAfter.D()))
	}
	if len(c.TrustedProxies) > 0 {
		prefixes := make([]netip.Prefix, len(c.TrustedProxies))
		for i, s := range c.TrustedProxies {
			prefixes[i], _ = parsePrefix(s)
		}
		opts = append(opts, lb.WithTrustedProxies(prefixes...))
	}
	return opts
}

// newBalancer builds the balancer c describes over tr. c must have passed
// validate.
func (c *config) newBalancer(log *slog.Logger, tr http.RoundTripper) (*lb.Balancer, error) {
	backends, err := c.newBackends()
	if err != nil {
		return nil, err
	}
	pool, err := lb.NewPool(backends...)
	if err != nil {
		return nil, err
	}
	return lb.New(pool, c.newStrategy(), c.options(log, tr)...), nil
}

// changedSettings returns the paths of the settings that differ between
// old and new, except the backends and the log level, which a reload
// applies: the settings that need a restart.
func changedSettings(old, new config) []string {
	var out []string
	diff("", reflect.ValueOf(old), reflect.ValueOf(new), &out)
	return slices.DeleteFunc(out, func(p string) bool {
		return p == "backends" || p == "log_level"
	})
}

func diff(path string, a, b reflect.Value, out *[]string) {
	join := func(name string) string {
		if path == "" {
			return name
		}
		return path + "." + name
	}
	switch {
	case a.Kind() == reflect.Struct && a.Type() != durationType:
		for i := range a.NumField() {
			if name := jsonName(a.Type().Field(i)); name != "" {
				diff(join(name), a.Field(i), b.Field(i), out)
			}
		}
		return
	case a.Kind() == reflect.Pointer && !a.IsNil() && !b.IsNil():
		diff(path, a.Elem(), b.Elem(), out)
		return
	case (a.Kind() == reflect.Slice || a.Kind() == reflect.Map) && a.Len() == 0 && b.Len() == 0:
		return // nil and empty are the same setting
	}
	if !reflect.DeepEqual(a.Interface(), b.Interface()) {
		*out = append(*out, path)
	}
}
