package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/tinylb/lb"
)

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

// backendProtocols are the backend_protocol settings and the
// lb.BackendProtocol each stands for.
var backendProtocols = map[string]lb.BackendProtocol{
	"":           lb.BackendHTTP1,
	"http1":      lb.BackendHTTP1,
	"http2-grpc": lb.BackendHTTP2ForGRPC,
	"http2":      lb.BackendHTTP2,
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
	opts = append(opts, c.bodyOptions()...)
	if p := backendProtocols[c.BackendProtocol]; p != lb.BackendHTTP1 {
		// The HTTP/2 requests go through a copy of tr, with its timeouts.
		opts = append(opts, lb.WithBackendProtocol(p))
	}
	if c.Health.Active != nil {
		opts = append(opts, lb.WithHealthCheck(c.Health.Active.check()))
	}
	// Always given, so that its zero value is the library's default
	// (max_fails 1) and -1 turns passive checks off.
	opts = append(opts, lb.WithPassiveHealth(c.Health.Passive.passive()))
	if c.SlowStart > 0 {
		opts = append(opts, lb.WithSlowStart(c.SlowStart.D()))
	}
	if c.PanicThreshold > 0 {
		opts = append(opts, lb.WithPanicThreshold(c.PanicThreshold))
	}
	if c.RetryAfter > 0 {
		opts = append(opts, lb.WithRetryAfter(c.RetryAfter.D()))
	}
	opts = append(opts, c.stickyOptions()...)
	opts = append(opts, c.loadReportsOptions()...)
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
