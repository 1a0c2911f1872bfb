package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
)

// config is the proxy's configuration, as parsed from the command line.
type config struct {
	listen   string
	strategy string // rr, swrr, leastconn or hash
	hashKey  string // with hash: header:NAME, cookie:NAME, query:NAME, ip or path
	backends []backendSpec

	rawBackends []string // the -backend flags, until check parses them

	healthPath     string // "" turns active health checks off
	healthInterval time.Duration

	passiveMaxFails    int // 0 turns passive health checks off
	passiveFailTimeout time.Duration

	retries         int // attempts after the first one
	slowStart       time.Duration
	shutdownTimeout time.Duration
}

// backendSpec is one -backend flag.
type backendSpec struct {
	url    string
	weight int
}

// Defaults of the flags.
const (
	defaultListen          = "127.0.0.1:8080"
	defaultStrategy        = "rr"
	defaultHealthInterval  = 5 * time.Second
	defaultMaxFails        = 1
	defaultFailTimeout     = 10 * time.Second
	defaultRetries         = 2
	defaultShutdownTimeout = 10 * time.Second
)

const usageHead = `Usage: %[1]s -backend URL[=WEIGHT] [-backend ...] [flags]

%[1]s is a standalone HTTP load balancer built on github.com/tinylb/lb.
It serves on -listen and spreads requests over the backends.

Examples:
  %[1]s -listen 127.0.0.1:8080 -strategy swrr \
      -backend http://127.0.0.1:9001=5 -backend http://127.0.0.1:9002
  %[1]s -strategy hash -hash-key header:X-User -health-path /healthz \
      -backend http://10.0.0.1:8080 -backend http://10.0.0.2:8080

Flags:
`

// newFlagSet returns the flag set that fills c. Its output is discarded:
// parseFlags returns errors, and main prints them.
func newFlagSet(name string, c *config) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.listen, "listen", defaultListen, "`address` to serve on")
	fs.StringVar(&c.strategy, "strategy", defaultStrategy,
		"balancing `strategy`: rr (round robin), swrr (smooth weighted round robin),\n"+
			"leastconn (weighted least connections) or hash (consistent hash, needs -hash-key)")
	fs.StringVar(&c.hashKey, "hash-key", "",
		"`key` that -strategy hash hashes: header:NAME, cookie:NAME, query:NAME, ip (client address)\n"+
			"or path; a request with an empty key is balanced round robin")
	fs.Func("backend",
		"a backend, repeatable: an http or https `URL[=WEIGHT]`, where WEIGHT is an integer from\n"+
			"1 to "+strconv.Itoa(lb.MaxWeight)+" (default 1); the text after the last = is the weight, so a URL\n"+
			"that contains = needs an explicit weight",
		func(s string) error {
			// Parsed by check, which quotes it without credentials: the
			// flag package would quote it as it is.
			c.rawBackends = append(c.rawBackends, s)
			return nil
		})
	fs.StringVar(&c.healthPath, "health-path", "",
		"`path` to check each backend with GET, expecting a 2xx or 3xx status (rise 2, fall 3);\n"+
			"empty turns active health checks off")
	fs.DurationVar(&c.healthInterval, "health-interval", defaultHealthInterval,
		"`duration` between health checks of a backend (needs -health-path)")
	fs.IntVar(&c.passiveMaxFails, "passive-max-fails", defaultMaxFails,
		"failed requests within -passive-fail-timeout that take a backend out of rotation for\n"+
			"-passive-fail-timeout (nginx's max_fails); 0 turns passive health checks off")
	fs.DurationVar(&c.passiveFailTimeout, "passive-fail-timeout", defaultFailTimeout,
		"sliding window for -passive-max-fails, and how long a backend stays out (nginx's fail_timeout)")
	fs.IntVar(&c.retries, "retries", defaultRetries,
		"how many times a failed request may be retried on another backend, when that is safe;\n"+
			"0 turns retries off")
	fs.DurationVar(&c.slowStart, "slow-start", 0,
		"`duration` over which a backend that comes up ramps to its full share; 0 turns slow start off")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", defaultShutdownTimeout,
		"on SIGINT or SIGTERM, how long requests in flight get to finish")
	return fs
}

// usage writes the help text of the flag set to w.
func usage(w io.Writer, name string) {
	fmt.Fprintf(w, usageHead, name)
	fs := newFlagSet(name, new(config))
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// parseFlags parses the command-line arguments (without the program name)
// into a config and checks it completely, so that a config it returns
// starts without errors of its own. -h and -help return [flag.ErrHelp].
func parseFlags(args []string) (config, error) {
	var c config
	fs := newFlagSet("tinylb", &c)
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	set := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := c.check(fs.Args(), set); err != nil {
		return config{}, err
	}
	return c, nil
}

// check reports the first problem with c. args are the arguments left
// after the flags; set holds the names of the flags given.
func (c *config) check(args []string, set map[string]bool) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected argument %q: backends are given with -backend URL", args[0])
	}
	if _, _, err := net.SplitHostPort(c.listen); err != nil {
		return fmt.Errorf("invalid -listen %q: want host:port, e.g. 127.0.0.1:8080 or :8080", c.listen)
	}
	switch c.strategy {
	case "rr", "swrr", "leastconn":
		if set["hash-key"] {
			return fmt.Errorf("-hash-key is only used with -strategy hash, not %s", c.strategy)
		}
	case "hash":
		if c.hashKey == "" {
			return errors.New("-strategy hash needs -hash-key (header:NAME, cookie:NAME, query:NAME, ip or path)")
		}
		if _, err := parseHashKey(c.hashKey); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown -strategy %q: want rr, swrr, leastconn or hash", c.strategy)
	}
	for _, raw := range c.rawBackends {
		b, err := parseBackend(raw)
		if err != nil {
			return err
		}
		c.backends = append(c.backends, b)
	}
	c.rawBackends = nil
	if len(c.backends) == 0 {
		return errors.New("no backends: give at least one -backend URL[=WEIGHT]")
	}
	if _, err := c.pool(); err != nil {
		return fmt.Errorf("invalid -backend: %w", err) // a duplicate
	}
	if c.healthPath != "" {
		if c.healthInterval <= 0 {
			return fmt.Errorf("invalid -health-interval %v: must be positive", c.healthInterval)
		}
		if err := c.healthCheck().Validate(); err != nil {
			return fmt.Errorf("invalid -health-path %q: %w", c.healthPath, err)
		}
	} else if set["health-interval"] {
		return errors.New("-health-interval needs -health-path")
	}
	switch {
	case c.passiveMaxFails < 0:
		return fmt.Errorf("invalid -passive-max-fails %d: must be 0 (off) or more", c.passiveMaxFails)
	case c.passiveFailTimeout <= 0:
		return fmt.Errorf("invalid -passive-fail-timeout %v: must be positive", c.passiveFailTimeout)
	case c.passiveMaxFails == 0 && set["passive-fail-timeout"]:
		return errors.New("-passive-fail-timeout has no effect with -passive-max-fails 0")
	case c.retries < 0:
		return fmt.Errorf("invalid -retries %d: must be 0 (off) or more", c.retries)
	case c.slowStart < 0:
		return fmt.Errorf("invalid -slow-start %v: must not be negative", c.slowStart)
	case c.shutdownTimeout <= 0:
		return fmt.Errorf("invalid -shutdown-timeout %v: must be positive", c.shutdownTimeout)
	}
	return nil
}

// parseBackend parses the value of a -backend flag: a URL, optionally
// followed by "=" and a weight.
func parseBackend(s string) (backendSpec, error) {
	b := backendSpec{url: s, weight: 1}
	if i := strings.LastIndexByte(s, '='); i >= 0 {
		b.url = s[:i]
		w := s[i+1:]
		if w == "" {
			return backendSpec{}, fmt.Errorf("invalid -backend %q: missing weight after \"=\"", redact(s))
		}
		n, err := strconv.Atoi(w)
		if err != nil {
			return backendSpec{}, fmt.Errorf("invalid -backend %q: weight %q is not an integer", redact(s), w)
		}
		b.weight = n
	}
	if !strings.Contains(b.url, "://") {
		return backendSpec{}, fmt.Errorf("invalid -backend %q: want an http:// or https:// URL", redact(s))
	}
	// Let the library judge the URL and the weight. Its errors quote the
	// URL without credentials.
	if _, err := b.backend(); err != nil {
		return backendSpec{}, fmt.Errorf("invalid -backend: %w", err)
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

func (b backendSpec) backend() (*lb.Backend, error) {
	return lb.NewBackend(b.url, lb.WithWeight(b.weight))
}

// pool returns a new pool of the configured backends. It fails if two of
// them have the same URL.
func (c *config) pool() (*lb.Pool, error) {
	var list []*lb.Backend
	for _, spec := range c.backends {
		be, err := spec.backend()
		if err != nil {
			return nil, err
		}
		list = append(list, be)
	}
	return lb.NewPool(list...)
}

// parseHashKey turns a -hash-key value into a key function.
func parseHashKey(s string) (lb.KeyFunc, error) {
	kind, name, hasName := strings.Cut(s, ":")
	switch {
	case kind == "ip" && !hasName:
		return lb.ClientIPKey(), nil
	case kind == "path" && !hasName:
		return lb.PathKey(), nil
	case (kind == "header" || kind == "cookie" || kind == "query") && !hasName:
		return nil, fmt.Errorf("invalid -hash-key %q: want %s:NAME", s, kind)
	case hasName && name == "":
		return nil, fmt.Errorf("invalid -hash-key %q: empty name after %q", s, kind+":")
	case kind == "header":
		return lb.HeaderKey(name), nil
	case kind == "cookie":
		return lb.CookieKey(name), nil
	case kind == "query":
		return lb.QueryKey(name), nil
	}
	return nil, fmt.Errorf("invalid -hash-key %q: want header:NAME, cookie:NAME, query:NAME, ip or path", s)
}

// newStrategy returns the configured strategy. c must have passed check.
func (c *config) newStrategy() lb.Strategy {
	switch c.strategy {
	case "swrr":
		return lb.SmoothWeighted()
	case "leastconn":
		return lb.LeastConn()
	case "hash":
		key, _ := parseHashKey(c.hashKey)
		return lb.ConsistentHash(key)
	}
	return lb.RoundRobin()
}

func (c *config) healthCheck() *health.HTTPCheck {
	return &health.HTTPCheck{Path: c.healthPath, Interval: c.healthInterval}
}

// options returns the balancer options of c, logging to log.
func (c *config) options(log *slog.Logger) []lb.Option {
	opts := []lb.Option{
		lb.WithLogger(log),
		lb.WithRetry(lb.RetryPolicy{Tries: c.retries + 1}),
	}
	if c.healthPath != "" {
		opts = append(opts, lb.WithHealthCheck(c.healthCheck()))
	}
	if c.passiveMaxFails > 0 {
		opts = append(opts, lb.WithPassiveHealth(health.Passive{
			MaxFails:    c.passiveMaxFails,
			FailTimeout: c.passiveFailTimeout,
		}))
	}
	if c.slowStart > 0 {
		opts = append(opts, lb.WithSlowStart(c.slowStart))
	}
	return opts
}

// newBalancer builds the balancer c describes. c must have passed check.
func (c *config) newBalancer(log *slog.Logger) (*lb.Balancer, error) {
	pool, err := c.pool()
	if err != nil {
		return nil, err
	}
	return lb.New(pool, c.newStrategy(), c.options(log)...), nil
}
