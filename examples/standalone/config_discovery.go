package main

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tinylb/lb/discovery"
)

// discoveryConfig is the "discovery" object of the config file: the
// backends come from a discovery source instead of a "backends" list, and
// the pool follows it (github.com/tinylb/lb/discovery).
//
//	"discovery": {"kind": "dns", "name": "api.internal", "port": 8080}
//	"discovery": {"kind": "srv", "name": "_http._tcp.api.internal"}
//	"discovery": {"kind": "srv", "service": "http", "proto": "tcp", "name": "api.internal"}
//
//	"discovery": {"kind": "etcd", "endpoints": ["10.0.0.5:2379"], "prefix": "/services/api/"}
//
// kind dns polls the A and AAAA records of name: one backend per address,
// on port. kind srv polls the SRV records of name (or of
// _service._proto.name): one backend per address of each record's target,
// on the record's port; the lowest priority value makes the primaries,
// higher ones the backups, and the weight is the backend's weight (0
// counts as 1). Lookups come every refresh, or sooner when the records'
// TTL (at least min_ttl) runs out. A failed lookup (SERVFAIL, NXDOMAIN, a
// timeout) keeps the backends of the last good one, and so does an empty
// answer unless allow_empty is true. kind etcd watches the keys under
// prefix, one backend per key (see config_etcd.go).
type discoveryConfig struct {
	Kind       string   `json:"kind"` // dns or srv
	Name       string   `json:"name"`
	Service    string   `json:"service"`  // srv, with proto
	Proto      string   `json:"proto"`    // srv, with service
	Port       int      `json:"port"`     // dns only: SRV records carry their ports
	Scheme     string   `json:"scheme"`   // http (default) or https
	Refresh    duration `json:"refresh"`  // 0: 30s
	MinTTL     duration `json:"min_ttl"`  // 0: 1s
	Resolver   string   `json:"resolver"` // host:port of a DNS server; "": those of /etc/resolv.conf
	AllowEmpty bool     `json:"allow_empty"`

	// Kind etcd (see config_etcd.go).
	Endpoints      []string `json:"endpoints"`       // host:port or http(s)://host:port
	Prefix         string   `json:"prefix"`          // ends with /
	DialTimeout    duration `json:"dial_timeout"`    // 0: 5s
	RequestTimeout duration `json:"request_timeout"` // each read of the prefix; 0: 5s
	Username       string   `json:"username"`        // "": no authentication
	PasswordEnv    string   `json:"password_env"`    // the environment variable of username's password

	password string // the value of PasswordEnv, read by validate
}

// discoveryKinds builds the source of each kind this build supports from
// a config that passed validation; log is where the source logs (nil:
// nowhere). The adapters that live in modules of their own
// (github.com/tinylb/lb/discovery/etcd, .../kubernetes) are built in
// because this program is a module of its own too: their dependencies
// reach its go.mod, never the library's.
var discoveryKinds = map[string]func(d *discoveryConfig, log *slog.Logger) discovery.Source{
	"dns":  func(d *discoveryConfig, _ *slog.Logger) discovery.Source { return d.dnsSource() },
	"srv":  func(d *discoveryConfig, _ *slog.Logger) discovery.Source { return d.dnsSource() },
	"etcd": func(d *discoveryConfig, log *slog.Logger) discovery.Source { return etcdSource{d: d, log: log} },
}

// missingKinds are the kinds that exist as adapters in modules of their
// own, but not in this build.
var missingKinds = []string{"kubernetes"}

// dnsSource returns the DNS source of d, a dns or srv config.
func (d *discoveryConfig) dnsSource() *discovery.DNSSource {
	opts := []discovery.DNSOption{}
	if d.Scheme != "" {
		opts = append(opts, discovery.WithScheme(d.Scheme))
	}
	if d.Refresh > 0 {
		opts = append(opts, discovery.WithRefresh(d.Refresh.D()))
	}
	if d.MinTTL > 0 {
		opts = append(opts, discovery.WithMinTTL(d.MinTTL.D()))
	}
	if d.Resolver != "" {
		opts = append(opts, discovery.WithResolverAddr(d.Resolver))
	}
	if d.Kind == "srv" {
		return discovery.SRV(d.Service, d.Proto, d.Name, opts...)
	}
	return discovery.DNS(d.Name, d.Port, opts...)
}

// source returns the source of d, which must have passed validation; it
// logs to log (nil: nowhere).
func (d *discoveryConfig) source(log *slog.Logger) discovery.Source {
	return discoveryKinds[d.Kind](d, log)
}

// String describes the source in logs: "dns api.internal:8080".
func (d *discoveryConfig) String() string {
	if s, ok := d.source(nil).(fmt.Stringer); ok {
		return s.String()
	}
	return d.Kind + " " + d.Name
}

// watchOptions returns the watcher options of d.
func (d *discoveryConfig) watchOptions() []discovery.Option {
	if d.AllowEmpty {
		return []discovery.Option{discovery.WithAllowEmpty()}
	}
	return nil
}

// validate checks the discovery object; p is its path. A kind added to
// discoveryKinds brings its own checks here.
func (d *discoveryConfig) validate(p string) error {
	kinds := slices.Sorted(maps.Keys(discoveryKinds))
	if _, ok := discoveryKinds[d.Kind]; !ok {
		switch {
		case slices.Contains(missingKinds, d.Kind):
			return badf(p+".kind", quote(d.Kind), "this build has no %s support", d.Kind)
		case d.Kind == "":
			return badf(p+".kind", "", "missing: want %s", orList(kinds))
		}
		return badf(p+".kind", quote(d.Kind), "unknown kind: want %s", orList(kinds))
	}
	if d.Kind == "etcd" {
		return d.validateEtcd(p)
	}
	return d.validateDNS(p)
}

// validateDNS checks a discovery object of kind dns or srv; p is its path.
func (d *discoveryConfig) validateDNS(p string) error {
	switch {
	case len(d.Endpoints) > 0 || d.Prefix != "" || d.DialTimeout != 0 || d.RequestTimeout != 0 || d.Username != "" || d.PasswordEnv != "":
		return badf(p, "", "endpoints, prefix, dial_timeout, request_timeout, username and password_env are for kind etcd; kind %s takes name", d.Kind)
	case strings.Trim(d.Name, ".") == "":
		return badf(p+".name", quote(d.Name), "want a DNS name, such as api.internal")
	case d.Kind == "dns" && (d.Port < 1 || d.Port > 65535):
		return badf(p+".port", strconv.Itoa(d.Port), "must be between 1 and 65535")
	case d.Kind == "srv" && d.Port != 0:
		return badf(p+".port", strconv.Itoa(d.Port), "SRV records carry their ports: leave port out")
	case d.Kind == "dns" && (d.Service != "" || d.Proto != ""):
		return badf(p+".service", quote(d.Service), "only used with kind srv")
	case d.Kind == "srv" && (d.Service == "") != (d.Proto == ""):
		return badf(p+".service", quote(d.Service), "give both service and proto (such as http and tcp), or neither")
	case d.Scheme != "" && d.Scheme != "http" && d.Scheme != "https":
		return badf(p+".scheme", quote(d.Scheme), "want http or https")
	case d.Refresh < 0:
		return badf(p+".refresh", quoteD(d.Refresh), "must not be negative (0 is the default, %v)", discovery.DefaultRefresh)
	case d.MinTTL < 0:
		return badf(p+".min_ttl", quoteD(d.MinTTL), "must not be negative (0 is the default, %v)", discovery.DefaultMinTTL)
	}
	if d.Resolver != "" {
		if _, port, err := net.SplitHostPort(d.Resolver); err != nil || port == "" {
			return badf(p+".resolver", quote(d.Resolver), "want host:port, such as 10.0.0.2:53")
		}
	}
	if err := d.dnsSource().Validate(); err != nil {
		// Whatever the checks above missed: the library has the last word.
		msg := err.Error()
		if _, rest, ok := strings.Cut(msg, discovery.ErrInvalidSource.Error()+": "); ok {
			msg = rest
		}
		return badf(p, "", "%s", msg)
	}
	return nil
}

// startWait bounds how long the proxy waits, at start, for the first set
// of backends from discovery before it serves (503s) without them.
const startWait = 5 * time.Second

// errNoStaticBackends is the start of the error for a config with neither
// backends nor discovery.
var errNoStaticBackends = errors.New(`no backends: give at least one -backend URL[=WEIGHT], or a "backends" list or a "discovery" object in the -config file`)
