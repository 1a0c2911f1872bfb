package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/tinylb/lb"
)

// flagValues are the command-line flags. Each one that is given overrides
// the setting it stands for (flagPaths).
type flagValues struct {
	config             string
	listen             string
	strategy           string
	hashKey            string
	balanceFactor      float64
	backends           []string // raw -backend values, parsed by apply
	healthPath         string
	healthInterval     time.Duration
	passiveMaxFails    int
	passiveFailTimeout time.Duration
	tries              int
	retries            string // refused: -tries replaced it
	slowStart          time.Duration
	shutdownTimeout    time.Duration
	tlsCert            string
	tlsKey             string
	h2c                bool
}

// flagPaths maps each flag to the setting it overrides, so that an invalid
// value is reported under the flag's name.
var flagPaths = map[string]string{
	"listen":               "listen",
	"strategy":             "strategy",
	"hash-key":             "hash_key",
	"balance-factor":       "balance_factor",
	"backend":              "backends",
	"health-path":          "health.active.path",
	"health-interval":      "health.active.interval",
	"passive-max-fails":    "health.passive.max_fails",
	"passive-fail-timeout": "health.passive.fail_timeout",
	"tries":                "retries.tries",
	"slow-start":           "slow_start",
	"shutdown-timeout":     "timeouts.shutdown",
	"tls-cert":             "tls.cert",
	"tls-key":              "tls.key",
	"h2c":                  "h2c",
}

const usageHead = `Usage: %[1]s -backend URL[=WEIGHT] [-backend ...] [flags]
       %[1]s -config lb.json [flags]

%[1]s is a standalone HTTP load balancer built on github.com/tinylb/lb.
It serves on -listen and spreads requests over the backends.

The JSON config file of -config holds every setting (see lb.example.json);
a flag given on the command line overrides the setting it stands for.
With -tls-cert and -tls-key it serves HTTPS, with HTTP/2 (h2) and
HTTP/1.1 by ALPN; -h2c adds HTTP/2 in the clear to a plain listener.
SIGHUP re-reads the file and applies its backends, log level and TLS
certificate in place; SIGINT or SIGTERM stops gracefully.

Settings have the names and the zero values of the library's fields:
0 (or leaving a setting out) means the library's default, and -1 turns
off what the library lets turn off (-passive-max-fails -1).

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
func newFlagSet(v *flagValues) *flag.FlagSet {
	fs := flag.NewFlagSet(progName, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&v.config, "config", "",
		"JSON config `file` (see lb.example.json); flags given on the command line override\n"+
			"its settings, and SIGHUP re-reads it")
	fs.StringVar(&v.listen, "listen", defaultListen, "`address` to serve on, host:port; port 0 picks any free port")
	fs.StringVar(&v.strategy, "strategy", defaultStrategy,
		"balancing `strategy`: rr (round robin), swrr (smooth weighted round robin),\n"+
			"leastconn (weighted least connections), leastrequest (power of two choices on requests\n"+
			"in flight), peakewma (power of two choices on peak latency EWMA), hash (consistent hash,\n"+
			"needs -hash-key) or boundedhash (consistent hash with bounded loads, needs -hash-key)")
	fs.StringVar(&v.hashKey, "hash-key", "",
		"`key` that -strategy hash or boundedhash hashes: header:NAME, cookie:NAME, query:NAME,\n"+
			"ip (client address) or path; a request with an empty key is balanced round robin")
	fs.Float64Var(&v.balanceFactor, "balance-factor", defaultBalanceFactor,
		"with -strategy boundedhash, the `c` that holds each backend to c times the average load\n"+
			"(HAProxy's hash-balance-factor / 100): a finite number of at least 1")
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
			"empty turns active health checks off (health.HTTPCheck.Path)")
	fs.DurationVar(&v.healthInterval, "health-interval", schedule.Interval,
		"`duration` between health checks of a backend (needs -health-path); 0 means the default\n"+
			"(health.HTTPCheck.Interval)")
	fs.IntVar(&v.passiveMaxFails, "passive-max-fails", libMaxFails,
		"failed requests within -passive-fail-timeout that take a backend out of rotation for\n"+
			"-passive-fail-timeout (nginx's max_fails, health.Passive.MaxFails); 0 means the default,\n"+
			"-1 turns passive health checks off")
	fs.DurationVar(&v.passiveFailTimeout, "passive-fail-timeout", libFailTimeout,
		"sliding window for -passive-max-fails, and how long a backend stays out (nginx's fail_timeout,\n"+
			"health.Passive.FailTimeout); 0 means the default")
	fs.IntVar(&v.tries, "tries", libTries,
		"most attempts a request may make, the first included, on different backends when that is\n"+
			"safe (lb.RetryPolicy.Tries); 0 means the default, 1 turns retries off")
	fs.DurationVar(&v.slowStart, "slow-start", 0,
		"`duration` over which a backend that comes up ramps to its full share; 0 turns slow start off")
	fs.DurationVar(&v.shutdownTimeout, "shutdown-timeout", defaultShutdownTimeout,
		"on SIGINT or SIGTERM, how long requests in flight get to finish")
	fs.StringVar(&v.tlsCert, "tls-cert", "",
		"PEM certificate `file` (with any intermediates after it): serve HTTPS, with h2 and http/1.1\n"+
			"by ALPN (needs -tls-key); SIGHUP re-reads it")
	fs.StringVar(&v.tlsKey, "tls-key", "", "PEM private key `file` of -tls-cert")
	fs.BoolVar(&v.h2c, "h2c", false,
		"also serve HTTP/2 in the clear (h2c, with prior knowledge) beside HTTP/1.1 on -listen;\n"+
			"not with -tls-cert")
	return fs
}

// usage writes the help text of the flag set to w.
func usage(w io.Writer) {
	fmt.Fprintf(w, usageHead, progName)
	fs := newFlagSet(new(flagValues))
	fs.SetOutput(w)
	fs.PrintDefaults()
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
	if set["balance-factor"] {
		c.BalanceFactor = v.balanceFactor
	}
	if set["backend"] {
		c.Backends = nil
		c.Discovery = nil // the flags replace the file's backends, however it gives them
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
				c.Health.Active = new(activeConfig)
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
		c.Health.Passive.MaxFails = v.passiveMaxFails
	}
	if set["passive-fail-timeout"] {
		if c.Health.Passive.MaxFails == -1 {
			return errors.New("-passive-fail-timeout has no effect with -passive-max-fails -1")
		}
		c.Health.Passive.FailTimeout = duration(v.passiveFailTimeout)
	}
	if set["tries"] {
		c.Retries.Tries = v.tries
	}
	if set["slow-start"] {
		c.SlowStart = duration(v.slowStart)
	}
	if set["shutdown-timeout"] {
		c.Timeouts.Shutdown = duration(v.shutdownTimeout)
	}
	if set["tls-cert"] {
		c.TLS.Cert = v.tlsCert
	}
	if set["tls-key"] {
		c.TLS.Key = v.tlsKey
	}
	if set["h2c"] {
		c.H2C = v.h2c
	}
	return nil
}
