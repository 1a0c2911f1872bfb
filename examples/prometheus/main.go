// Command prometheus runs a tinylb balancer over a few local backends and
// exports its statistics as Prometheus metrics on /metrics, next to the
// balancer itself on / and its live status page on /status/.
//
//	go run . -listen 127.0.0.1:8080
//	curl -s localhost:8080/metrics | grep tinylb_
//
// With -once it sends some traffic through the balancer, prints one scrape
// of /metrics to standard output and exits, which is what CI runs.
//
// The example is a module of its own so that the tinylb library itself
// does not depend on client_golang.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve the balancer, /metrics and /status/ on")
	n := flag.Int("backends", 3, "number of local demo backends to start")
	once := flag.Bool("once", false, "send some traffic, print one scrape of /metrics and exit")
	flag.Parse()
	if *once {
		*listen = "127.0.0.1:0"
	}
	if err := run(*listen, *n, *once, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// run starts n demo backends and the front server, then serves until
// SIGINT/SIGTERM or, with once, until one scrape has been written to out.
func run(listen string, n int, once bool, out io.Writer) error {
	if n < 1 {
		return fmt.Errorf("-backends %d: need at least one", n)
	}
	var backends []*lb.Backend
	for i := range n {
		srv, url, err := startDemoBackend(i)
		if err != nil {
			return err
		}
		defer srv.Close()
		be, err := lb.NewBackend(url, lb.WithWeight(n-i))
		if err != nil {
			return err
		}
		backends = append(backends, be)
	}
	pool, err := lb.NewPool(backends...)
	if err != nil {
		return err
	}
	bal := lb.New(pool, lb.SmoothWeighted(),
		lb.WithHealthCheck(&health.HTTPCheck{Path: "/healthz", Interval: 2 * time.Second}))
	defer bal.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(bal, nil))

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/status/", http.StripPrefix("/status", lb.StatusHandler(bal)))
	mux.Handle("/", bal)

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	front := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- front.Serve(ln) }()
	base := "http://" + ln.Addr().String()

	if once {
		err := scrapeOnce(base, out)
		front.Close()
		<-served
		return err
	}

	log.Printf("balancer on %s/, metrics on %s/metrics, status page on %s/status/", base, base, base)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := front.Shutdown(shutdown); err != nil {
		return err
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// scrapeOnce sends a little traffic through the balancer at base, then
// copies one scrape of base/metrics to out.
func scrapeOnce(base string, out io.Writer) error {
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	get := func(url string, w io.Writer) error {
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		_, err = io.Copy(w, resp.Body)
		return err
	}
	for range 30 {
		if err := get(base+"/", io.Discard); err != nil {
			return err
		}
	}
	return get(base+"/metrics", out)
}

// startDemoBackend serves a backend on a free loopback port that answers
// after a few milliseconds, as a real one would.
func startDemoBackend(i int) (*http.Server, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Duration(i+1)*time.Millisecond + rand.N(2*time.Millisecond))
		fmt.Fprintf(w, "hello from backend %d\n", i)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return srv, "http://" + ln.Addr().String(), nil
}
