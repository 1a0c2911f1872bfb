package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"

	"google.golang.org/grpc"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// backend is one grpc-go server on 127.0.0.1, serving plaintext: the Echo
// service and grpc-go's standard health service. A grpc-go server on a
// plain listener speaks HTTP/2 with prior knowledge (h2c) only, which is
// what tinylb sends gRPC calls over under lb.BackendHTTP2ForGRPC, and what
// health.GRPCCheck sends, to http:// backends. For a backend that speaks
// HTTP/1.1 too, on the same port, see startDualBackend.
type backend struct {
	name   string
	url    string // http://127.0.0.1:port
	echo   *echo
	health *grpchealth.Server // nil without the health service
	srv    *grpc.Server
	served chan error // Serve's result, once it returns

	// Set by startDualBackend, for which srv serves only through its
	// ServeHTTP: the HTTP server on the port, and its record.
	http *http.Server
	dual *dualState

	stopOnce sync.Once
	stopErr  error
}

// startBackend starts a backend named name. withHealth registers the health
// service, reporting SERVING for the server as a whole ("") and for the
// Echo service; without it, health checks get UNIMPLEMENTED.
func startBackend(name string, withHealth bool) (*backend, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := newBackend(name, ln, withHealth)
	go func() { b.served <- b.srv.Serve(ln) }()
	return b, nil
}

// newBackend makes the backend to serve on ln, not yet serving.
func newBackend(name string, ln net.Listener, withHealth bool) *backend {
	b := &backend{
		name:   name,
		url:    "http://" + ln.Addr().String(),
		echo:   &echo{name: name},
		srv:    grpc.NewServer(),
		served: make(chan error, 1),
	}
	b.srv.RegisterService(&echoDesc, b.echo)
	if withHealth {
		b.health = grpchealth.NewServer() // "" starts SERVING
		b.health.SetServingStatus(echoService, healthpb.HealthCheckResponse_SERVING)
		healthpb.RegisterHealthServer(b.srv, b.health)
	}
	return b
}

// setServing sets the health of the server as a whole and of the Echo
// service.
func (b *backend) setServing(serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	b.health.SetServingStatus("", st)
	b.health.SetServingStatus(echoService, st)
}

// stop closes the backend's listener and connections, ends its calls, and
// waits for Serve to return. Only the first call stops; later ones return
// its result.
func (b *backend) stop() error {
	b.stopOnce.Do(func() { b.stopErr = b.doStop() })
	return b.stopErr
}

func (b *backend) doStop() error {
	if b.http != nil {
		return b.stopDual()
	}
	b.srv.Stop()
	if err := <-b.served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("backend %s: %w", b.name, err)
	}
	return nil
}

// backends is a set of backends, in the order they were started.
type backends []*backend

// startBackends starts one backend with the health service per name.
func startBackends(names ...string) (backends, error) {
	var bs backends
	for _, name := range names {
		b, err := startBackend(name, true)
		if err != nil {
			bs.stop()
			return nil, err
		}
		bs = append(bs, b)
	}
	return bs, nil
}

// stop stops every backend and returns the first error.
func (bs backends) stop() error {
	var errs []error
	for _, b := range bs {
		errs = append(errs, b.stop())
	}
	return errors.Join(errs...)
}

func (bs backends) urls() []string {
	urls := make([]string, len(bs))
	for i, b := range bs {
		urls[i] = b.url
	}
	return urls
}

func (bs backends) names() string {
	names := make([]string, len(bs))
	for i, b := range bs {
		names[i] = b.name
	}
	return strings.Join(names, ", ")
}
