// Standalone is tinylb, a runnable HTTP load balancer built on the
// library:
//
//	go build -C examples/standalone -o ../../tinylb .   # a module of its own
//	./tinylb -listen 127.0.0.1:8080 -strategy swrr \
//	    -backend http://127.0.0.1:9001=5 -backend http://127.0.0.1:9002
//	./tinylb -config examples/standalone/lb.example.json
//
// With -tls-cert and -tls-key it serves HTTPS, offering h2 and http/1.1
// by ALPN; with -h2c, HTTP/2 in the clear (prior knowledge) beside
// HTTP/1.1. The config file's http2 object sets the HTTP/2 server's
// limits.
//
// Build it before sending it signals: go run does not pass SIGHUP on to
// the program it runs. Run it with -h for every flag; lb.example.json
// shows every setting of the config file. A bad flag or config file
// (an address that cannot be listened on included) is reported on stderr
// as "tinylb: ...", naming the flag or the field's path, with exit status
// 2 before anything starts.
//
// Signals:
//   - SIGHUP re-reads the config file (and the flags, which still override
//     it). The new backend list is applied in place: backends that stay
//     keep their health state, counters and health checker, and take their
//     new weight and backup flag; new ones are added and the others removed
//     (their requests in flight finish). The log level changes too, and
//     the TLS certificate and key are read again from the same files.
//     With a "discovery" object instead of a backend list (the backends
//     come from DNS A/AAAA or SRV records, see lb.srv.example.json, or
//     from the keys under an etcd prefix), a
//     changed object replaces the watcher: the pool keeps its backends
//     until the new source's first set, applied in place as a new list
//     is; an unchanged one keeps watching.
//     Other changed settings need a restart: they are logged at Warn and
//     ignored.
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
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// progName is the program's name in its messages, whatever its binary is
// called (go run names it standalone).
const progName = "tinylb"

func main() {
	args := os.Args[1:]
	cfg, err := load(args)
	if errors.Is(err, flag.ErrHelp) {
		usage(os.Stderr)
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\nRun '%s -h' for usage.\n", progName, err, progName)
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
