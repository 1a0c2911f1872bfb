// Command grpc shows tinylb in front of gRPC servers. It starts three
// grpc-go backends on 127.0.0.1 (a, b and c, each serving a small Echo
// service and grpc-go's standard health service), puts a tinylb balancer in
// front of them that checks their health with health.GRPCCheck, and makes a
// few calls through it with a grpc-go client, printing which backend
// answered. Then it sets b NOT_SERVING, shows the balancer take it out of
// rotation, and sets it SERVING again. Unless -once is given, it then
// serves the balancer until interrupted.
//
//	go run .                        # demo, then serve on 127.0.0.1:8080
//	go run . -listen 127.0.0.1:9000 # serve somewhere else
//	go run . -once                  # demo only (used by CI)
//
// The module is apart from the library's so that grpc-go never enters the
// library's go.mod: tinylb itself needs nothing of grpc-go to balance gRPC
// or to check its health.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "`address` to serve the balancer on")
	once := flag.Bool("once", false, "exit after the demo instead of serving")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "grpc: unexpected argument %q\n", flag.Arg(0))
		flag.Usage()
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, *listen, *once); err != nil {
		fmt.Fprintln(os.Stderr, "grpc:", err)
		os.Exit(1)
	}
}

// demoCheck is the example's health check: it asks for the Echo service by
// name, every 200ms, so that the demo sees a backend leave and come back
// within a second; two failures in a row take a backend out and one pass
// brings it back. Real deployments keep the defaults (5s, Rise 2, Fall 3).
var demoCheck = health.GRPCCheck{
	Service:  echoService,
	Interval: 200 * time.Millisecond,
	Rise:     1,
	Fall:     2,
}

// run does the demo through a balancer on listen (any free port with
// once) and then, unless once is set, serves it until ctx ends. It closes
// everything it starts before returning.
func run(ctx context.Context, out io.Writer, listen string, once bool) (err error) {
	if once {
		listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	bs, err := startBackends("a", "b", "c")
	if err != nil {
		ln.Close()
		return err
	}
	defer func() { err = errors.Join(err, bs.stop()) }()
	f, err := startFront(ln, bs, demoCheck)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, f.close()) }()

	fmt.Fprintf(out, "tinylb gRPC example: grpc-go backends %s on 127.0.0.1, tinylb in front on %s.\n", bs.names(), f.addr)
	if err := demo(ctx, out, f, bs); err != nil {
		return err
	}
	if once {
		return nil
	}
	fmt.Fprintf(out, "\nServing %s.Hello, Find, Wait, Count and Chat through tinylb on %s (plaintext HTTP/2); interrupt to stop.\n", echoService, f.addr)
	select {
	case <-ctx.Done():
		return nil
	case err := <-f.served:
		return err
	}
}

// demo makes calls through the front and takes b out and back in.
func demo(ctx context.Context, out io.Writer, f *front, bs backends) error {
	conn, err := dial(f.addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	client := echoClient{conn}
	hellos := func(n int) error {
		for i := 1; i <= n; i++ {
			reply, err := client.Hello(ctx, fmt.Sprint(i))
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "  Hello(%d): %s\n", i, reply)
		}
		return nil
	}

	fmt.Fprintln(out, "\nUnary calls, spread round robin over the backends:")
	if err := hellos(6); err != nil {
		return err
	}
	fmt.Fprintln(out, "\nA server-streaming call goes to one backend:")
	msgs, err := client.Count(ctx, 3)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  Count(3): %q\n", msgs)

	b := bs[1]
	b.setServing(false)
	if err := waitState(ctx, f.bal, b.url, lb.StateDown); err != nil {
		return err
	}
	fmt.Fprintf(out, "\n%s reports NOT_SERVING: its health check fails (%s) and tinylb takes it out:\n", b.name, lastCheckError(f.bal, b.url))
	if err := hellos(4); err != nil {
		return err
	}

	b.setServing(true)
	if err := waitState(ctx, f.bal, b.url, lb.StateUp); err != nil {
		return err
	}
	fmt.Fprintf(out, "\n%s reports SERVING again and is back in rotation:\n", b.name)
	return hellos(3)
}

// dial returns a grpc-go client of the balancer at addr, in plaintext:
// the front speaks HTTP/2 with prior knowledge, as a gRPC server does.
// The passthrough scheme hands addr to the dialer as it is, with no DNS.
func dial(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// front is tinylb serving gRPC: a balancer over the backends and the
// HTTP server that takes gRPC clients' connections for it.
type front struct {
	bal    *lb.Balancer
	srv    *http.Server
	addr   string
	served chan error // Serve's result, once it returns
}

// startFront serves a balancer over bs on ln.
//
// gRPC needs HTTP/2 on both sides of the balancer. Towards the backends,
// lb.WithBackendProtocol(lb.BackendHTTP2ForGRPC) sends gRPC calls (by
// their content type, application/grpc) over HTTP/2, which is h2c with
// prior knowledge to http:// backends, as grpc-go servers expect, and
// everything else over HTTP/1.1, WebSocket handshakes included. The
// balancer's default transport carries both; its ResponseHeaderTimeout
// (30s) counts until a server-streaming call's first message, since
// grpc-go sends the headers with it, which is ample for this service's
// calls (a service whose streams start slowly would pass a transport of
// its own: lb.NewTransport() with the timeout raised, lb.WithTransport).
// Towards the clients, the http.Server accepts unencrypted HTTP/2 (and
// HTTP/1 for anything else); it streams responses and passes trailers,
// which carry gRPC's status.
func startFront(ln net.Listener, bs backends, check health.GRPCCheck) (*front, error) {
	var list []*lb.Backend
	for _, u := range bs.urls() {
		b, err := lb.NewBackend(u)
		if err != nil {
			ln.Close()
			return nil, err
		}
		list = append(list, b)
	}
	pool, err := lb.NewPool(list...)
	if err != nil {
		ln.Close()
		return nil, err
	}
	bal := lb.New(pool, lb.RoundRobin(),
		lb.WithBackendProtocol(lb.BackendHTTP2ForGRPC),
		lb.WithHealthCheck(check))

	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	f := &front{
		bal:    bal,
		srv:    &http.Server{Handler: bal, Protocols: &protocols, ReadHeaderTimeout: 10 * time.Second},
		addr:   ln.Addr().String(),
		served: make(chan error, 1),
	}
	go func() { f.served <- f.srv.Serve(ln) }()
	return f, nil
}

// close stops the server (ending its connections), then the balancer,
// whose Close stops its health checks and closes the idle connections of
// its own transports and of the check.
func (f *front) close() error {
	err := f.srv.Close()
	if serr := <-f.served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return errors.Join(err, f.bal.Close())
}

// waitState waits until the balancer sees the backend at url in state
// want, for at most 10s.
func waitState(ctx context.Context, bal *lb.Balancer, url string, want lb.State) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if got := stateOf(bal, url); got == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("backend %s: state %s, not %s, after waiting: %w", url, stateOf(bal, url), want, ctx.Err())
		case <-tick.C:
		}
	}
}

// stateOf returns the state of the backend at url, StateClosed if the
// balancer has no such backend. Stats names a backend by its key, which
// for the http://127.0.0.1:port of our backends is the URL as written.
func stateOf(bal *lb.Balancer, url string) lb.State {
	for _, b := range bal.Stats().Backends {
		if b.URL == url {
			return b.State
		}
	}
	return lb.StateClosed
}

// lastCheckError returns the error of the last health check of the
// backend at url, "" if it passed.
func lastCheckError(bal *lb.Balancer, url string) string {
	for _, b := range bal.Stats().Backends {
		if b.URL == url {
			return b.LastCheckError
		}
	}
	return ""
}
