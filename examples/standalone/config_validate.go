package main

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// fieldError is a bad setting: where it is (a path in the config file such
// as backends[2].weight, or a flag such as -strategy), the value as written
// ("" when not worth repeating) and what is wrong with it.
type fieldError struct {
	path, value, msg string
	err              error // the library's error behind msg, for errors.Is; nil if none
}

func (e *fieldError) Unwrap() error { return e.err }

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

// validate reports the first bad setting of c as a *fieldError with its
// path in the config file. Where the library has a Validate method, it has
// the last word. The phases check the settings in the order of the file.
func (c *config) validate() error {
	for _, phase := range []func() error{
		c.validateListen,
		c.validateStrategy,
		c.validateBackends,
		c.validateBackendProtocol,
		c.validateHealth,
		func() error { return c.Retries.validate("retries") },
		c.validateBodies,
		c.validateBalancing,
		c.validateSticky,
		c.validateLoadReports,
		func() error { return c.Timeouts.validate("timeouts") },
		c.validateServer,
		c.validateFront,
		func() error { return c.Status.validate("status", c.Listen) },
		c.validateLogLevel,
	} {
		if err := phase(); err != nil {
			return err
		}
	}
	return nil
}

// validateListen checks the address to serve on.
func (c *config) validateListen() error {
	if msg := addrProblem(c.Listen); msg != "" {
		return badf("listen", quote(c.Listen), "%s", msg)
	}
	return nil
}

// addrProblem returns what is wrong with an address to listen on, or "".
// It wants host:port with an IP address, a host name or nothing as the
// host, and a port number from 1 to 65535, or 0 for any free port: what
// net.Listen("tcp", addr) takes, short of port names, so that a bad
// address stops the proxy before it starts, not when it listens.
func addrProblem(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "want host:port, e.g. 127.0.0.1:8080 or :8080"
	}
	if n, err := strconv.Atoi(port); err != nil || n > 65535 || strings.Trim(port, "0123456789") != "" {
		return "port must be between 1 and 65535, or 0 for any free port"
	}
	if host == "" {
		return ""
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	if strings.ContainsFunc(host, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '.' || r == '_')
	}) {
		return "not an IP address or host name"
	}
	return ""
}

// validateBackendProtocol checks the protocol spoken to the backends.
func (c *config) validateBackendProtocol() error {
	if _, ok := backendProtocols[c.BackendProtocol]; !ok {
		return badf("backend_protocol", quote(c.BackendProtocol), "want http1, http2-grpc or http2")
	}
	return nil
}

// validateBalancing checks the balancer options that are one value each:
// slow start, the panic threshold and Retry-After.
func (c *config) validateBalancing() error {
	switch {
	case c.SlowStart < 0:
		return badf("slow_start", quoteD(c.SlowStart), "must not be negative")
	case c.PanicThreshold < 0 || c.PanicThreshold > 100:
		return badf("panic_threshold", strconv.Itoa(c.PanicThreshold), "must be between 0 (off) and 100")
	case c.RetryAfter < 0:
		return badf("retry_after", quoteD(c.RetryAfter), "must not be negative")
	}
	return nil
}

// validate checks the timeouts; p is their path.
func (t *timeoutConfig) validate(p string) error {
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
			return badf(p+"."+d.name, quoteD(d.v), "must not be negative (0 is none)")
		case d.v <= 0 && !d.zeroOK && d.zeroNote != "":
			return badf(p+"."+d.name, quoteD(d.v), "must be positive: %s", d.zeroNote)
		case d.v <= 0 && !d.zeroOK:
			return badf(p+"."+d.name, quoteD(d.v), "must be positive")
		}
	}
	return nil
}

// validateServer checks the limits of the server and the proxies it
// trusts.
func (c *config) validateServer() error {
	if c.MaxHeaderBytes < 1<<10 || c.MaxHeaderBytes > 16<<20 {
		return badf("max_header_bytes", strconv.Itoa(c.MaxHeaderBytes), "must be between 1024 and %d", 16<<20)
	}
	for i, s := range c.TrustedProxies {
		if _, err := parsePrefix(s); err != nil {
			return badf(index("trusted_proxies", i), quote(s), "want a CIDR such as 10.0.0.0/8, or an IP address")
		}
	}
	return nil
}

// validateLogLevel checks the log level.
func (c *config) validateLogLevel() error {
	if _, err := parseLevel(c.LogLevel); err != nil {
		return badf("log_level", quote(c.LogLevel), "want debug, info, warn or error")
	}
	return nil
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
