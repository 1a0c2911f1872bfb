package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// config is the proxy's configuration. Its JSON form is the schema of the
// -config file (see lb.example.json); the command-line flags set some of
// its fields. defaultConfig holds the defaults: a file only changes the
// fields it names, and a flag only the fields it stands for, when it is
// given on the command line.
type config struct {
	Listen   string `json:"listen"`
	Strategy string `json:"strategy"` // rr, swrr, leastconn, leastrequest, peakewma, hash or boundedhash
	HashKey  string `json:"hash_key"` // with hash and boundedhash: header:NAME, cookie:NAME, query:NAME, ip or path
	// BalanceFactor is boundedhash's c (lb.BoundedHash); 0: 1.25.
	BalanceFactor float64         `json:"balance_factor"`
	Backends      []backendConfig `json:"backends"`
	// Discovery, instead of Backends, has the pool follow a discovery
	// source (see discoveryConfig).
	Discovery *discoveryConfig `json:"discovery"`
	Health    healthConfig     `json:"health"`
	Retries   retryConfig      `json:"retries"`
	// RequestBuffering and BodyMemory are lb.WithRequestBuffering and
	// lb.WithBodyMemory.
	RequestBuffering bufferingConfig `json:"request_buffering"`
	BodyMemory       int64           `json:"body_memory"`     // bytes; 0: 64 MiB or GOMEMLIMIT/8; -1: no bound
	SlowStart        duration        `json:"slow_start"`      // 0: off
	PanicThreshold   int             `json:"panic_threshold"` // percent; 0: off
	RetryAfter       duration        `json:"retry_after"`     // 0: no Retry-After header
	// StickyCookie is lb.WithStickyCookie, LoadReports lb.WithLoadReports;
	// nil: off.
	StickyCookie   *stickyConfig      `json:"sticky_cookie"`
	LoadReports    *loadReportsConfig `json:"load_reports"`
	Timeouts       timeoutConfig      `json:"timeouts"`
	MaxHeaderBytes int                `json:"max_header_bytes"`
	// TLS, H2C and HTTP2 are the listener's protocols: HTTPS with h2 and
	// http/1.1 by ALPN, or h2c (HTTP/2 in the clear, with prior
	// knowledge) beside HTTP/1.1, and the HTTP/2 server's limits.
	TLS            tlsConfig    `json:"tls"`
	H2C            bool         `json:"h2c"`
	HTTP2          http2Config  `json:"http2"`
	TrustedProxies []string     `json:"trusted_proxies"` // CIDRs or addresses
	Status         statusConfig `json:"status"`
	LogLevel       string       `json:"log_level"` // debug, info, warn or error
	// BackendProtocol is lb.WithBackendProtocol: http1 (or ""),
	// http2-grpc or http2.
	BackendProtocol string `json:"backend_protocol"`

	file string // the -config file, "" without one
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

// Defaults.
const (
	defaultListen          = "127.0.0.1:8080"
	defaultStrategy        = "rr"
	defaultShutdownTimeout = 10 * time.Second
	defaultMaxHeaderBytes  = 64 << 10
	minStatusToken         = 16
)

// The library's defaults that a setting of 0 stands for, shown in the
// help of the flags: the library does not export them.
const (
	libTries       = 3                // lb.RetryPolicy.Tries
	libMaxFails    = 1                // health.Passive.MaxFails
	libFailTimeout = 10 * time.Second // health.Passive.FailTimeout
)

// defaultConfig returns the configuration of no file and no flags but
// -backend.
func defaultConfig() config {
	return config{
		Listen:   defaultListen,
		Strategy: defaultStrategy,
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
		HTTP2:          defaultHTTP2(),
		LogLevel:       "info",
	}
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

// load parses the command-line arguments (without the program name),
// reads the -config file if one is named, applies the flags given over it
// and checks the result completely, so that a config it returns starts
// without errors of its own. -h and -help return [flag.ErrHelp]. A reload
// calls it again with the same arguments.
func load(args []string) (config, error) {
	var v flagValues
	fs := newFlagSet(&v)
	// -retries, which counted retries, is refused below with a pointer to
	// -tries. It is left out of the help.
	fs.Func("retries", "", func(s string) error { v.retries = s; return nil })
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q: backends are given with -backend URL", fs.Arg(0))
	}
	set := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["retries"] {
		return config{}, fmt.Errorf("-retries: no such flag: use -tries, which counts the first attempt too (%s)", triesHint(v.retries))
	}

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
