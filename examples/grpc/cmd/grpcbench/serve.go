package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"time"

	"github.com/tinylb/lb"
	"google.golang.org/grpc"
)

// serveBackends serves n Echo backends, b1..bn, on 127.0.0.1:base..base+n-1
// until ctx ends. A grpc-go server on a plain listener speaks h2c with
// prior knowledge.
func serveBackends(ctx context.Context, n, base int) error {
	var servers []*grpc.Server
	served := make(chan error, n)
	defer func() {
		for _, s := range servers {
			s.Stop()
		}
	}()
	for i := range n {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
		if err != nil {
			return err
		}
		s := grpc.NewServer()
		s.RegisterService(&echoDesc, &benchEcho{name: fmt.Sprintf("b%d", i+1)})
		servers = append(servers, s)
		go func() { served <- s.Serve(ln) }()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case err := <-served:
		return err
	}
}

// newProxy returns tinylb over the backends at urls, round robin, with the
// transport the gRPC example uses: lb.NewTransport's defaults speaking
// unencrypted HTTP/2 only (h2c with prior knowledge), which grpc-go
// servers need. The library is gaining a one-line option for this; the
// bench should switch to it once it lands, to measure what users write.
func newProxy(urls []string) (*lb.Balancer, *http.Transport, error) {
	if len(urls) == 0 {
		return nil, nil, errors.New("-proxy needs backends (-to http://host:port,...)")
	}
	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	tr := lb.NewTransport()
	tr.Protocols = &h2c

	var list []*lb.Backend
	for _, u := range urls {
		b, err := lb.NewBackend(u)
		if err != nil {
			return nil, nil, err
		}
		list = append(list, b)
	}
	pool, err := lb.NewPool(list...)
	if err != nil {
		return nil, nil, err
	}
	return lb.New(pool, lb.RoundRobin(), lb.WithTransport(tr)), tr, nil
}

// serveProxy serves tinylb on addr until ctx ends, to HTTP/1 and h2c
// clients, writing a CPU profile of the whole time to cpuprofile if set.
func serveProxy(ctx context.Context, addr string, urls []string, cpuprofile string) (err error) {
	bal, tr, err := newProxy(urls)
	if err != nil {
		return err
	}
	defer tr.CloseIdleConnections()
	defer bal.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			ln.Close()
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			ln.Close()
			return err
		}
		defer func() {
			pprof.StopCPUProfile()
			err = errors.Join(err, f.Close())
		}()
	}
	srv := frontServer(bal)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		err = srv.Close()
		<-served
		return err
	case err := <-served:
		return err
	}
}

// frontServer is the proxy's HTTP server: HTTP/1 and unencrypted HTTP/2
// (prior knowledge), as gRPC clients speak in plaintext.
func frontServer(h http.Handler) *http.Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Server{Handler: h, Protocols: &protocols, ReadHeaderTimeout: 10 * time.Second}
}
