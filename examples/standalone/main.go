// Standalone is a runnable HTTP load balancer built on tinylb:
//
//	go run ./examples/standalone -listen 127.0.0.1:8080 -strategy swrr \
//	    -backend http://127.0.0.1:9001=5 -backend http://127.0.0.1:9002
//
// Run it with -h for every flag. A bad flag is reported on stderr with exit
// status 2 before anything starts. SIGINT or SIGTERM stops it gracefully:
// it stops accepting connections, gives requests in flight up to
// -shutdown-timeout to finish, then closes the balancer. Logs go to stderr
// as slog text records at Info level: start, stop, backend state changes,
// retries and failed requests, never one record per request.
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
	"strconv"
	"syscall"
	"time"
)

func main() {
	name := filepath.Base(os.Args[0])
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		usage(os.Stderr, name)
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\nRun '%s -h' for usage.\n", name, err, name)
		os.Exit(2)
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop) // a second signal kills at once
	if err := run(ctx, cfg, log, nil); err != nil {
		log.Error("tinylb failed", "error", err)
		os.Exit(1)
	}
}

// run serves the balancer cfg describes until ctx ends, then shuts down
// gracefully. If ready is not nil, it is called with the address served
// once the server accepts connections.
func run(ctx context.Context, cfg config, log *slog.Logger, ready func(net.Addr)) error {
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return err
	}
	bal, err := cfg.newBalancer(log)
	if err != nil {
		ln.Close()
		return err
	}
	defer bal.Close() // stops the health checkers; after the server, below

	srv := &http.Server{
		Handler: bal,
		// No ReadTimeout or WriteTimeout: they would cut long uploads,
		// streamed responses and upgraded connections short.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	backends := make([]string, len(cfg.backends))
	for i, b := range cfg.backends {
		backends[i] = b.url + "=" + strconv.Itoa(b.weight)
	}
	log.Info("tinylb listening", "addr", ln.Addr().String(), "strategy", cfg.strategy, "backends", backends)
	if ready != nil {
		ready(ln.Addr())
	}

	select {
	case err := <-errc:
		return err // Serve failed on its own
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout", cfg.shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("requests still in flight at the shutdown deadline, closing their connections", "error", err)
		srv.Close()
	}
	<-errc // http.ErrServerClosed
	bal.Close()
	log.Info("stopped")
	return nil
}
