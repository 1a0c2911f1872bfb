// Standalone is a runnable HTTP load balancer built on tinylb:
//
//	go run ./examples/standalone -listen 127.0.0.1:8080 -strategy swrr \
//	    -backend http://127.0.0.1:9001=5 -backend http://127.0.0.1:9002
//	go run ./examples/standalone -config examples/standalone/lb.example.json
//
// Run it with -h for every flag; lb.example.json shows every setting of the
// config file. A bad flag or config file is reported on stderr, naming the
// flag or the field's path, with exit status 2 before anything starts.
//
// Signals:
//   - SIGHUP re-reads the config file (and the flags, which still override
//     it). The new backend list is applied in place: backends that stay
//     keep their health state, counters and health checker, and take their
//     new weight and backup flag; new ones are added and the others removed
//     (their requests in flight finish). The log level changes too. Other
//     changed settings need a restart: they are logged at Warn and ignored.
//     A bad file is logged at Error and the old config keeps serving.
//   - SIGINT or SIGTERM stops gracefully: the listeners close, requests in
//     flight get the shutdown timeout to finish, then the balancer closes
//     (stopping the health checks) and the process exits 0. A second
//     signal kills it at once.
//
// Logs go to stderr as slog text records: start, stop, reloads, backend
// state changes, retries and failed requests, never one record per request.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tinylb/lb"
)

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	cfg, err := load(args)
	if errors.Is(err, flag.ErrHelp) {
		usage(os.Stderr, name)
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\nRun '%s -h' for usage.\n", name, err, name)
		os.Exit(2)
	}

	// A proxy's heap is small and short-lived: collecting it less often
	// saves CPU on every request for a few MiB more memory. GOGC in the
	// environment still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}

	level := new(slog.LevelVar)
	level.Set(cfg.level())
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop) // a second signal kills at once
	hup := notifyReload()
	defer signal.Stop(hup)

	env := runEnv{args: args, log: log, level: level, reload: hup}
	if err := run(ctx, cfg, env); err != nil {
		log.Error("tinylb failed", "error", err)
		os.Exit(1)
	}
}

// notifyReload returns a channel that receives SIGHUP, which then no
// longer ends the process. signal.Stop undoes it.
func notifyReload() chan os.Signal {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return hup
}

// runEnv is what run needs besides the config.
type runEnv struct {
	args   []string       // the command line, re-read on each reload
	log    *slog.Logger   // the logger, whose level is
	level  *slog.LevelVar // this, set from the config
	reload <-chan os.Signal
	ready  func(*proxy) // if not nil, called once the proxy accepts connections
}

// proxy is a running load balancer: its listeners and servers, its
// balancer, and the config in effect.
type proxy struct {
	log   *slog.Logger
	level *slog.LevelVar
	args  []string

	mu  sync.Mutex // serializes reloads; guards cfg
	cfg config     // the settings in effect

	bal       *lb.Balancer
	transport *http.Transport
	ln        net.Listener
	srv       *http.Server
	statusLn  net.Listener // nil without a status page
	statusSrv *http.Server
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
	}
	if p.statusLn != nil {
		p.statusSrv = &http.Server{
			Handler:           p.statusHandler(),
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
// from reload, then shuts down.
func (p *proxy) serve(ctx context.Context, reload <-chan os.Signal, ready func(*proxy)) error {
	servers := 1
	errc := make(chan error, 2)
	go func() { errc <- p.srv.Serve(p.ln) }()
	if p.statusSrv != nil {
		servers++
		go func() { errc <- p.statusSrv.Serve(p.statusLn) }()
	}

	cfg := p.config()
	backends := make([]string, len(cfg.Backends))
	for i, b := range cfg.Backends {
		backends[i] = b.URL + "=" + strconv.Itoa(b.Weight)
		if b.Backup {
			backends[i] += " (backup)"
		}
	}
	attrs := []any{"addr", p.Addr().String(), "strategy", cfg.Strategy, "backends", backends}
	if cfg.file != "" {
		attrs = append(attrs, "config", cfg.file)
	}
	if a := p.StatusAddr(); a != nil {
		attrs = append(attrs, "status", a.String(), "status_actions", cfg.Status.Actions)
	}
	p.log.Info("tinylb listening", attrs...)
	if ready != nil {
		ready(p)
	}

	var failed error
loop:
	for {
		select {
		case err := <-errc: // a server failed on its own
			servers--
			failed = err
			break loop
		case <-reload:
			p.Reload() // logs its own errors
		case <-ctx.Done():
			break loop
		}
	}
	p.shutdown()
	for range servers {
		<-errc // http.ErrServerClosed
	}
	if failed != nil {
		return failed
	}
	p.log.Info("stopped")
	return nil
}

// config returns the settings in effect.
func (p *proxy) config() config {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg
}

// Reload re-reads the config file and the command line as SIGHUP does,
// and applies what can change in place: the backend list (with weights and
// backup flags, keeping the state of the backends that stay) and the log
// level. A bad config is logged, returned and changes nothing.
func (p *proxy) Reload() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	next, err := load(p.args)
	if err != nil {
		p.log.Error("config reload rejected; the running config stays", "error", err)
		return err
	}
	if next.file == "" {
		p.log.Warn("config reload: no -config file; nothing to reload")
		return nil
	}
	if changed := changedSettings(p.cfg, next); len(changed) > 0 {
		p.log.Warn("config reload: needs restart to apply these changed settings; ignored until then", "settings", changed)
	}

	backends, err := next.newBackends()
	if err == nil {
		err = p.bal.Pool().Update(backends...)
	}
	if err != nil { // cannot happen to a config that passed validate
		p.log.Error("config reload rejected; the running config stays", "error", err)
		return err
	}
	added, removed, changed := backendChanges(p.cfg.Backends, next.Backends)
	p.cfg.Backends = next.Backends
	if next.LogLevel != p.cfg.LogLevel {
		p.level.Set(next.level())
		p.cfg.LogLevel = next.LogLevel
	}
	p.log.Info("config reloaded", "config", next.file, "backends", len(next.Backends),
		"added", added, "removed", removed, "changed", changed, "log_level", p.cfg.LogLevel)
	return nil
}

// backendChanges lists the backends added, removed, and changed (weight or
// backup flag) from old to new, by normalized URL.
func backendChanges(old, new []backendConfig) (added, removed, changed []string) {
	key := func(b backendConfig) string {
		if be, err := lb.NewBackend(b.URL); err == nil {
			return be.Key()
		}
		return b.URL
	}
	before := make(map[string]backendConfig, len(old))
	for _, b := range old {
		before[key(b)] = b
	}
	after := make(map[string]bool, len(new))
	for _, b := range new {
		k := key(b)
		after[k] = true
		switch o, ok := before[k]; {
		case !ok:
			added = append(added, k)
		case o.Weight != b.Weight || o.Backup != b.Backup:
			changed = append(changed, k)
		}
	}
	for _, b := range old {
		if k := key(b); !after[k] {
			removed = append(removed, k)
		}
	}
	return added, removed, changed
}

// shutdown closes the listeners, gives the requests in flight the
// shutdown timeout to finish, then closes the balancer, which stops the
// health checkers.
func (p *proxy) shutdown() {
	timeout := p.config().Timeouts.Shutdown.D()
	p.log.Info("shutting down", "timeout", timeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var wg sync.WaitGroup
	var cut atomic.Bool
	for _, srv := range []*http.Server{p.srv, p.statusSrv} {
		if srv == nil {
			continue
		}
		wg.Go(func() {
			if err := srv.Shutdown(ctx); err != nil {
				p.log.Warn("requests still in flight at the shutdown deadline, closing their connections", "error", err)
				srv.Close()
				cut.Store(true)
			}
		})
	}
	wg.Wait()
	// Shutdown does not wait for upgraded (hijacked) connections such as
	// WebSockets; the balancer counts them in flight until they close.
	if !cut.Load() {
		if err := p.waitIdle(ctx); err != nil {
			p.log.Warn("upgraded connections still open at the shutdown deadline", "active", p.bal.Stats().Active)
		}
	}
	p.bal.Close()
	p.transport.CloseIdleConnections()
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
