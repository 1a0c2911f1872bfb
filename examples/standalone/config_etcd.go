package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/tinylb/lb/discovery"
	"github.com/tinylb/lb/discovery/etcd"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Defaults of the etcd fields of the discovery object.
const (
	defaultEtcdDialTimeout = 5 * time.Second
	etcdMinBackoff         = 100 * time.Millisecond // between failed connections, doubling
	etcdMaxBackoff         = 10 * time.Second
)

// The etcd fields of discoveryConfig: kind etcd lists the backends as the
// keys under prefix (github.com/tinylb/lb/discovery/etcd, whose README
// gives the value formats), read from the etcd cluster at endpoints.
//
//	"discovery": {"kind": "etcd", "endpoints": ["10.0.0.5:2379"], "prefix": "/services/api/"}
//
// The password is never in the file: password_env names the environment
// variable that holds it, read at each load and reload (a reload with a
// new password reconnects).

// validateEtcd checks a discovery object of kind etcd; p is its path. It
// reads the password from the environment.
func (d *discoveryConfig) validateEtcd(p string) error {
	switch {
	case d.Name != "" || d.Service != "" || d.Proto != "" || d.Port != 0 || d.Resolver != "" || d.MinTTL != 0 || d.Refresh != 0:
		return badf(p, "", "name, service, proto, port, resolver, refresh and min_ttl are for kinds dns and srv; kind etcd takes endpoints and prefix")
	case d.Scheme != "":
		return badf(p+".scheme", quote(d.Scheme), "the values under the prefix are whole URLs: leave scheme out")
	case len(d.Endpoints) == 0:
		return badf(p+".endpoints", "", `missing: want the etcd cluster's client addresses, such as ["10.0.0.5:2379"]`)
	case d.Prefix == "":
		return badf(p+".prefix", "", `missing: want the key prefix of the service, such as "/services/api/"`)
	case !strings.HasSuffix(d.Prefix, "/"):
		return badf(p+".prefix", quote(d.Prefix), "end it with /: %q would also take in the keys of %q", d.Prefix, d.Prefix+"2/")
	case d.DialTimeout < 0:
		return badf(p+".dial_timeout", quoteD(d.DialTimeout), "must not be negative (0 is the default, %v)", defaultEtcdDialTimeout)
	case d.RequestTimeout < 0:
		return badf(p+".request_timeout", quoteD(d.RequestTimeout), "must not be negative (0 is the default, 5s)")
	case d.PasswordEnv != "" && d.Username == "":
		return badf(p+".password_env", quote(d.PasswordEnv), "only used with username")
	}
	for i, e := range d.Endpoints {
		if !validEndpoint(e) {
			return badf(index(p+".endpoints", i), quote(e), "want host:port, or an http:// or https:// URL with a port, such as 10.0.0.5:2379")
		}
	}
	d.password = ""
	if d.Username != "" {
		if d.PasswordEnv == "" {
			return badf(p+".password_env", "", "missing: with username, name the environment variable that holds the password (the file never holds it)")
		}
		d.password = os.Getenv(d.PasswordEnv)
		if d.password == "" {
			return badf(p+".password_env", quote(d.PasswordEnv), "the environment variable %s is unset or empty", d.PasswordEnv)
		}
	}
	return nil
}

// validEndpoint reports whether e is an endpoint clientv3 dials: host:port,
// or http(s)://host:port.
func validEndpoint(e string) bool {
	hostPort := e
	if strings.Contains(e, "://") {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return false
		}
		hostPort = u.Host
	}
	host, port, err := net.SplitHostPort(hostPort)
	return err == nil && host != "" && port != ""
}

// etcdSource is the source of a discovery object of kind etcd. It owns its
// etcd client: Run connects, runs an etcd.Source over the client until ctx
// ends, then closes the client, so that the watcher's Close, on a reload
// or at shutdown, ends the connection too.
type etcdSource struct {
	d   *discoveryConfig
	log *slog.Logger // nil: nowhere
}

func (s etcdSource) String() string {
	return fmt.Sprintf("etcd prefix %q at %s", s.d.Prefix, strings.Join(s.d.Endpoints, ","))
}

// Run connects to etcd, trying again with backoff while that fails (with
// a username, clientv3.New authenticates, which needs the cluster up), and
// watches the prefix until ctx ends.
func (s etcdSource) Run(ctx context.Context, push func([]discovery.Target, error)) error {
	wait := etcdMinBackoff
	for {
		client, err := clientv3.New(s.clientConfig(ctx))
		if err == nil {
			defer client.Close()
			src := etcd.New(client, s.d.Prefix, etcd.WithLogger(s.log), etcd.WithRequestTimeout(s.d.RequestTimeout.D()))
			return src.Run(ctx, push)
		}
		if ctx.Err() != nil {
			return nil
		}
		push(nil, fmt.Errorf("etcd: connect to %s: %w", strings.Join(s.d.Endpoints, ","), err))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, etcdMaxBackoff)
	}
}

// clientConfig is the etcd client's config. The client's own zap logs are
// off: the source logs what matters (reconnections, skipped keys) with
// slog, and pushes the errors, which the watcher logs.
func (s etcdSource) clientConfig(ctx context.Context) clientv3.Config {
	dial := s.d.DialTimeout.D()
	if dial == 0 {
		dial = defaultEtcdDialTimeout
	}
	return clientv3.Config{
		Endpoints:   s.d.Endpoints,
		DialTimeout: dial,
		Username:    s.d.Username,
		Password:    s.d.password,
		Context:     ctx,
		Logger:      zap.NewNop(),
	}
}
