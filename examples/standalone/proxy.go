package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/discovery"
	"golang.org/x/sync/errgroup"
)

// proxy is a running load balancer: its listeners and servers, its
// balancer, and the config in effect.
type proxy struct {
	log   *slog.Logger
	level *slog.LevelVar
	args  []string

	mu  sync.Mutex // serializes reloads; guards cfg
	cfg config     // the settings in effect

	bal       *lb.Balancer
	watcher   *discovery.Watcher // keeps the pool in step with cfg.Discovery; nil without; guarded by mu
	transport *http.Transport
	ln        net.Listener
	srv       *http.Server
	statusLn  net.Listener // nil without a status page
	statusSrv *http.Server
	// cert is the listener's certificate with TLS, nil without; a reload
	// replaces it when the files have changed but not their paths.
	cert atomic.Pointer[tls.Certificate]
}

// run serves the balancer cfg describes until ctx ends, then shuts down
// gracefully. Each value received from env.reload reloads the config.
func run(ctx context.Context, cfg config, env runEnv) error {
	if env.log == nil {
		env.log = slog.New(slog.DiscardHandler)
	}
	if env.level == nil {
		env.level = new(slog.LevelVar)
		env.level.Set(cfg.level())
	}
	p, err := newProxy(cfg, env)
	if err != nil {
		return err
	}
	return p.serve(ctx, env.reload, env.ready)
}

// newProxy opens the listeners and builds the balancer and the servers.
func newProxy(cfg config, env runEnv) (*proxy, error) {
	p := &proxy{log: env.log, level: env.level, args: env.args, cfg: cfg}
	if cfg.TLS.on() {
		cert, err := cfg.TLS.load() // checked by load, unless the files just changed
		if err != nil {
			return nil, err
		}
		p.cert.Store(&cert)
	}
	var err error
	if p.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, err
	}
	if cfg.Status.Listen != "" {
		if p.statusLn, err = net.Listen("tcp", cfg.Status.Listen); err != nil {
			p.ln.Close()
			return nil, fmt.Errorf("status page: %w", err)
		}
	}
	p.transport = cfg.newTransport()
	if p.bal, err = cfg.newBalancer(p.log, p.transport); err != nil {
		p.ln.Close()
		if p.statusLn != nil {
			p.statusLn.Close()
		}
		return nil, err
	}

	if cfg.Discovery != nil {
		p.watch(cfg.Discovery)
		ctx, cancel := context.WithTimeout(context.Background(), startWait)
		err := p.watcher.WaitReady(ctx)
		cancel()
		if err != nil {
			p.log.Warn("no backends from discovery yet: requests get 503 until the first set", "discovery", cfg.Discovery.String(), "error", err)
		}
	}

	errorLog := slog.NewLogLogger(p.log.Handler(), slog.LevelWarn)
	t := cfg.Timeouts
	p.srv = &http.Server{
		Handler: p.bal,
		// Against slowloris: a client has ReadHeaderTimeout to send its
		// request headers, at most MaxHeaderBytes of them, and an idle
		// keep-alive connection is closed after IdleTimeout. ReadTimeout
		// and WriteTimeout are off by default: each is a deadline for the
		// whole request body or response, so they would cut long uploads,
		// streamed responses (server-sent events, large downloads) and
		// upgraded connections (WebSocket) short.
		ReadHeaderTimeout: t.ReadHeader.D(),
		ReadTimeout:       t.Read.D(),
		WriteTimeout:      t.Write.D(),
		IdleTimeout:       t.Idle.D(),
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          errorLog,
		// HTTP/1.1, and HTTP/2 over TLS or with h2c. Against rapid reset
		// and stream floods, the HTTP/2 server runs at most
		// MaxConcurrentStreams handlers per connection; against
		// CONTINUATION floods it bounds a request's headers by
		// MaxHeaderBytes (see the README).
		Protocols: cfg.protocols(),
		HTTP2:     cfg.http2(),
	}
	if cfg.TLS.on() {
		p.srv.TLSConfig = &tls.Config{
			MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				return p.cert.Load(), nil
			},
		}
	}
	if p.statusLn != nil {
		// The status page stays plain HTTP/1.1 whatever the listener
		// speaks: keep it on a loopback or private address.
		status := new(http.Protocols)
		status.SetHTTP1(true)
		p.statusSrv = &http.Server{
			Handler:           p.statusHandler(),
			Protocols:         status,
			ReadHeaderTimeout: t.ReadHeader.D(),
			ReadTimeout:       30 * time.Second, // nothing streams here
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       t.Idle.D(),
			MaxHeaderBytes:    cfg.MaxHeaderBytes,
			ErrorLog:          errorLog,
		}
	}
	return p, nil
}

// statusHandler returns the status page: read-only, or with the actions
// behind the token. With actions, GET /login asks a browser for the token
// (HTTP basic authentication, any user name): the page shows the action
// forms only to requests that carry it.
func (p *proxy) statusHandler() http.Handler {
	if !p.cfg.Status.Actions {
		return lb.StatusHandler(p.bal)
	}
	token := p.cfg.Status.token()
	auth := func(r *http.Request) bool { return authorized(r, token) }
	page := lb.StatusHandler(p.bal, lb.WithStatusActions(auth))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/login" {
			page.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		if !auth(r) {
			w.Header().Set("WWW-Authenticate", `Basic realm="tinylb status", charset="UTF-8"`)
			http.Error(w, "the status actions need the token as the password", http.StatusUnauthorized)
			return
		}
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
}

// Addr returns the address the proxy serves on.
func (p *proxy) Addr() net.Addr { return p.ln.Addr() }

// StatusAddr returns the address of the status page, or nil.
func (p *proxy) StatusAddr() net.Addr {
	if p.statusLn == nil {
		return nil
	}
	return p.statusLn.Addr()
}

// serve serves until ctx ends or a server fails, reloading on each value
// from reload, then shuts down. Each server and the control path (reloads,
// then the shutdown) run in one errgroup: the first server to fail
// cancels the control path, which shuts the others down, and serve
// returns that first error.
func (p *proxy) serve(ctx context.Context, reload <-chan os.Signal, ready func(*proxy)) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serveOn(p.srv, p.ln, "") })
	if p.statusSrv != nil {
		g.Go(func() error { return serveOn(p.statusSrv, p.statusLn, "status page: ") })
	}
	p.logListening()
	if ready != nil {
		ready(p)
	}
	g.Go(func() error {
		p.control(gctx, reload)
		p.shutdown()
		return nil
	})
	if err := g.Wait(); err != nil {
		return err
	}
	p.log.Info("stopped")
	return nil
}

// serveOn serves srv on ln until srv is shut down, which is no error:
// over TLS if srv has a TLS config, which holds the certificate. An error
// of its own is prefixed with what (such as "status page: ").
func serveOn(srv *http.Server, ln net.Listener, what string) error {
	serve := srv.Serve
	if srv.TLSConfig != nil {
		// ServeTLS, unlike Serve over a TLS listener, offers h2 by ALPN.
		serve = func(ln net.Listener) error { return srv.ServeTLS(ln, "", "") }
	}
	if err := serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%sserving on %s: %w", what, ln.Addr(), err)
	}
	return nil
}

// control reloads on each value from reload until ctx ends: at a signal
// to stop, or when a server failed.
func (p *proxy) control(ctx context.Context, reload <-chan os.Signal) {
	for {
		select {
		case <-reload:
			p.Reload() // logs its own errors
		case <-ctx.Done():
			return
		}
	}
}

// logListening logs the start: the addresses, the strategy, the backends.
func (p *proxy) logListening() {
	cfg := p.config()
	backends := make([]string, len(cfg.Backends))
	for i, b := range cfg.Backends {
		backends[i] = b.URL + "=" + strconv.Itoa(b.Weight)
		if b.Backup {
			backends[i] += " (backup)"
		}
	}
	attrs := []any{"addr", p.Addr().String(), "protocols", cfg.protoNames(), "strategy", cfg.Strategy, "backends", backends}
	if cfg.Discovery != nil {
		attrs = append(attrs, "discovery", cfg.Discovery.String(), "discovered", p.bal.Pool().Len())
	}
	if c := p.cert.Load(); c != nil && c.Leaf != nil {
		attrs = append(attrs, "tls_cert_expires", c.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if cfg.file != "" {
		attrs = append(attrs, "config", cfg.file)
	}
	if a := p.StatusAddr(); a != nil {
		attrs = append(attrs, "status", a.String(), "status_actions", cfg.Status.Actions)
	}
	p.log.Info("tinylb listening", attrs...)
}

// config returns the settings in effect.
func (p *proxy) config() config {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg
}

// shutdown closes the listeners, gives the requests in flight the
// shutdown timeout to finish, then closes the balancer, which stops the
// health checkers.
func (p *proxy) shutdown() {
	timeout := p.config().Timeouts.Shutdown.D()
	p.log.Info("shutting down", "timeout", timeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// The servers shut down side by side; one past the deadline does not
	// cut the other short (a plain Group: no shared cancel).
	var g errgroup.Group
	for _, srv := range []*http.Server{p.srv, p.statusSrv} {
		if srv == nil {
			continue
		}
		g.Go(func() error {
			if err := srv.Shutdown(ctx); err != nil {
				p.log.Warn("requests still in flight at the shutdown deadline, closing their connections", "error", err)
				srv.Close()
				return err
			}
			return nil
		})
	}
	// Shutdown does not wait for upgraded (hijacked) connections such as
	// WebSockets; the balancer counts them in flight until they close.
	if cut := g.Wait(); cut == nil {
		if err := p.waitIdle(ctx); err != nil {
			p.log.Warn("upgraded connections still open at the shutdown deadline", "active", p.bal.Stats().Active)
		}
	}
	p.mu.Lock()
	p.stopWatching()
	p.mu.Unlock()
	p.bal.Close()
	p.transport.CloseIdleConnections()
}

// watch starts a watcher that keeps the pool in step with d. Backends that
// the source's first set keeps keep their state. p.mu must be held, or p
// not yet serving.
func (p *proxy) watch(d *discoveryConfig) {
	log := p.log.With("discovery", d.String())
	opts := append(d.watchOptions(), discovery.WithLogger(log))
	p.watcher = discovery.Watch(context.Background(), d.source(log), p.bal.Pool(), opts...)
}

// stopWatching stops the watcher, if any; the pool keeps its backends.
// p.mu must be held.
func (p *proxy) stopWatching() {
	if p.watcher != nil {
		p.watcher.Close()
		p.watcher = nil
	}
}

// waitIdle waits until the balancer has no request in flight, or ctx ends.
func (p *proxy) waitIdle(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for p.bal.Stats().Active > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}
