// Command grpcbench measures the CPU cost of gRPC calls through a proxy.
// It has three modes, each a process of its own, so that a bench script
// (bench/grpc.sh) can pin them to CPUs and read their CPU time apart:
//
//	grpcbench -backends 3 -addr-base 18181
//	    grpc-go Echo backends on 127.0.0.1:18181..18183, until killed
//	grpcbench -proxy 127.0.0.1:18190 -to http://127.0.0.1:18181,http://127.0.0.1:18182,http://127.0.0.1:18183
//	    tinylb in front of them (round robin, h2c both ways), until killed
//	grpcbench -load 127.0.0.1:18190 -c 64 -d 10s -conns 4 -size 16
//	    a closed-loop client: 64 workers making unary Echo.Hello calls over
//	    4 HTTP/2 connections for 10 s, then one line of results
//
// -load takes a comma-separated list of addresses too (connection i goes
// to address i mod n), to load the backends directly. With -stream N a
// call is a server-streaming Echo.Count(N) that reads its N messages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs the mode the flags in args name and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("grpcbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	nBackends := fs.Int("backends", 0, "start `N` Echo backends and serve them until killed")
	addrBase := fs.Int("addr-base", 18181, "first `port` of the backends (127.0.0.1:port..port+N-1)")
	proxy := fs.String("proxy", "", "serve tinylb on `addr` until killed")
	to := fs.String("to", "", "the proxy's backends: comma-separated `urls` (http://host:port)")
	cpuprofile := fs.String("cpuprofile", "", "proxy mode: write a CPU profile to `file` when stopped")
	load := fs.String("load", "", "call the Echo service at `addr` (or addr,addr,...)")
	workers := fs.Int("c", 64, "load: concurrent `callers`")
	dur := fs.Duration("d", 10*time.Second, "load: how long to call")
	conns := fs.Int("conns", 4, "load: HTTP/2 `connections` (grpc.ClientConns) the callers share")
	size := fs.Int("size", 16, "load: request payload `bytes`")
	stream := fs.Int("stream", 0, "load: instead of unary calls, server-streaming calls of `N` messages each")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "grpcbench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	modes := 0
	for _, on := range []bool{*nBackends > 0, *proxy != "", *load != ""} {
		if on {
			modes++
		}
	}
	if modes != 1 {
		fmt.Fprintln(stderr, "grpcbench: give exactly one of -backends, -proxy and -load")
		fs.Usage()
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch {
	case *nBackends > 0:
		err = serveBackends(ctx, *nBackends, *addrBase)
	case *proxy != "":
		err = serveProxy(ctx, *proxy, splitList(*to), *cpuprofile)
	default:
		cfg := loadConfig{
			addrs: splitList(*load), workers: *workers, dur: *dur,
			conns: *conns, size: *size, stream: *stream,
		}
		var res result
		res, err = runLoad(ctx, cfg)
		if err == nil {
			fmt.Fprintln(stdout, res.line(cfg))
			if res.firstErr != nil {
				fmt.Fprintln(stderr, "grpcbench: first error:", res.firstErr)
			}
		}
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(stderr, "grpcbench:", err)
		return 1
	}
	return 0
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
