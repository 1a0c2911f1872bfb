// Quickstart shows how tinylb's strategies spread requests. It starts three
// backends on 127.0.0.1 (a, b and c, each answering its own name), and for
// each strategy builds a balancer, serves it on 127.0.0.1, sends requests
// through it and prints which backend answered. Then it serves a balancer
// over the same backends until interrupted.
//
//	go run ./examples/quickstart                    # demo, then serve on 127.0.0.1:8080
//	go run ./examples/quickstart -listen :9000      # serve somewhere else
//	go run ./examples/quickstart -once              # demo only (used by CI)
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/tinylb/lb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "`address` to serve the balancer on after the demo")
	once := flag.Bool("once", false, "exit after the demo instead of serving")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "quickstart: unexpected argument %q\n", flag.Arg(0))
		flag.Usage()
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, *listen, *once); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// run does the demo and then, unless once is set, serves a balancer on
// listen until ctx ends. It closes everything it starts before returning.
func run(ctx context.Context, out io.Writer, listen string, once bool) error {
	// Take the serving address first, so that a busy port fails at once.
	var ln net.Listener
	if !once {
		var err error
		if ln, err = net.Listen("tcp", listen); err != nil {
			return err
		}
		defer ln.Close() // in case the demo fails; closing twice is harmless
	}

	bk, err := startBackends("a", "b", "c")
	if err != nil {
		return err
	}
	defer bk.close()

	// The balancers reach the backends through this transport; see dial.
	tr := &http.Transport{DialContext: bk.dial, MaxIdleConnsPerHost: 32}
	defer tr.CloseIdleConnections()
	d := &demo{ctx: ctx, out: out, bk: bk, tr: tr, client: &http.Client{Timeout: 10 * time.Second}}
	defer d.client.CloseIdleConnections()

	fmt.Fprintf(out, "tinylb quickstart: backends %s on 127.0.0.1, each answering its name.\n", strings.Join(bk.names, ", "))
	for _, step := range []func() error{d.roundRobin, d.smoothWeighted, d.leastConn, d.consistentHash} {
		if err := step(); err != nil {
			return err
		}
	}
	if once {
		return nil
	}
	return d.serve(ln)
}

// backends are the demo's upstream servers. Each listens on a random port
// of 127.0.0.1 and answers every request with its name; GET /hold answers
// its name at once and then holds the response open until release is
// closed.
type backends struct {
	names   []string
	addrs   map[string]string // "a.test:80" -> "127.0.0.1:41234"
	servers []*server
	release chan struct{}
}

func startBackends(names ...string) (*backends, error) {
	bk := &backends{names: names, addrs: make(map[string]string), release: make(chan struct{})}
	for _, name := range names {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			bk.close()
			return nil, err
		}
		bk.addrs[name+".test:80"] = ln.Addr().String()
		bk.servers = append(bk.servers, startServer(ln, bk.handler(name)))
	}
	return bk, nil
}

func (bk *backends) handler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, name)
		if r.URL.Path == "/hold" {
			http.NewResponseController(w).Flush()
			select {
			case <-bk.release:
			case <-r.Context().Done():
			}
		}
	})
}

// url returns the URL the pools know a backend by. The pools use these
// names rather than the random 127.0.0.1 ports, so that the output, and
// the consistent-hash ring (which is built from the URLs), are the same on
// every run.
func (bk *backends) url(name string) string { return "http://" + name + ".test" }

// dial connects to a backend by the name its URL uses. It is the
// DialContext of the transport given to the balancers with lb.WithTransport;
// a real deployment would use lb's default transport and real addresses.
func (bk *backends) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	real, ok := bk.addrs[addr]
	if !ok {
		return nil, fmt.Errorf("no demo backend at %s", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, real)
}

func (bk *backends) close() {
	select {
	case <-bk.release:
	default:
		close(bk.release)
	}
	for _, s := range bk.servers {
		s.shutdown()
	}
}

// server is an http.Server running in a goroutine of its own.
type server struct {
	srv  *http.Server
	done chan struct{}
}

func startServer(ln net.Listener, h http.Handler) *server {
	s := &server{srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.srv.Serve(ln) // returns http.ErrServerClosed after shutdown
	}()
	return s
}

// shutdown stops the server gracefully, giving requests in flight up to 5
// seconds, and waits for its goroutine.
func (s *server) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
	<-s.done
}

// demo holds what the demonstrations share.
type demo struct {
	ctx    context.Context
	out    io.Writer
	bk     *backends
	tr     *http.Transport
	client *http.Client
}

// front builds a balancer with strategy s over the backends, with the
// given weights (1 each if nil), and serves it on a random port of
// 127.0.0.1. It returns the balancer's URL and a function that stops it.
func (d *demo) front(s lb.Strategy, weights ...int) (string, func(), error) {
	bal, err := d.balancer(s, weights...)
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		bal.Close()
		return "", nil, err
	}
	srv := startServer(ln, bal)
	stop := func() {
		srv.shutdown()
		bal.Close()
	}
	return "http://" + ln.Addr().String(), stop, nil
}

// balancer builds a balancer with strategy s over fresh backends for a,
// b and c: a Backend belongs to one pool.
func (d *demo) balancer(s lb.Strategy, weights ...int) (*lb.Balancer, error) {
	var list []*lb.Backend
	for i, name := range d.bk.names {
		var opts []lb.BackendOption
		if i < len(weights) {
			opts = append(opts, lb.WithWeight(weights[i]))
		}
		be, err := lb.NewBackend(d.bk.url(name), opts...)
		if err != nil {
			return nil, err
		}
		list = append(list, be)
	}
	pool, err := lb.NewPool(list...)
	if err != nil {
		return nil, err
	}
	return lb.New(pool, s, lb.WithTransport(d.tr)), nil
}

// get sends GET url with the given header (name, value pairs) and returns
// the backend's name from the answer.
func (d *demo) get(url string, header ...string) (string, error) {
	req, err := http.NewRequestWithContext(d.ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return strings.TrimSpace(string(body)), nil
}

// burst sends n requests one after another and returns who answered each.
func (d *demo) burst(url string, n int) ([]string, error) {
	seq := make([]string, 0, n)
	for range n {
		name, err := d.get(url)
		if err != nil {
			return nil, err
		}
		seq = append(seq, name)
	}
	return seq, nil
}

// tally prints how many requests each backend served, with a bar.
func (d *demo) tally(seq []string) {
	count := make(map[string]int)
	for _, name := range seq {
		count[name]++
	}
	for _, name := range d.bk.names {
		fmt.Fprintf(d.out, "  %-8s %2d  %s\n", name, count[name], strings.Repeat("#", count[name]))
	}
}

func (d *demo) roundRobin() error {
	url, stop, err := d.front(lb.RoundRobin())
	if err != nil {
		return err
	}
	defer stop()
	seq, err := d.burst(url, 12)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "\nRound robin: lb.RoundRobin(), 12 requests\n")
	fmt.Fprintf(d.out, "  order    %s\n", strings.Join(seq, " "))
	d.tally(seq)
	return nil
}

func (d *demo) smoothWeighted() error {
	url, stop, err := d.front(lb.SmoothWeighted(), 5, 1, 1)
	if err != nil {
		return err
	}
	defer stop()
	seq, err := d.burst(url, 14)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "\nSmooth weighted: lb.SmoothWeighted(), weights a=5 b=1 c=1, 14 requests\n")
	fmt.Fprintf(d.out, "  order    %s | %s\n", strings.Join(seq[:7], " "), strings.Join(seq[7:], " "))
	d.tally(seq)
	return nil
}

// leastConn holds two requests open, then sends short ones: they all go to
// the backend with nothing in flight.
func (d *demo) leastConn() error {
	url, stop, err := d.front(lb.LeastConn())
	if err != nil {
		return err
	}
	defer stop()

	var long []string
	var bodies []io.ReadCloser
	defer func() {
		for _, b := range bodies {
			b.Close()
		}
	}()
	for range 2 {
		req, err := http.NewRequestWithContext(d.ctx, http.MethodGet, url+"/hold", nil)
		if err != nil {
			return err
		}
		resp, err := d.client.Do(req)
		if err != nil {
			return err
		}
		bodies = append(bodies, resp.Body)
		// The backend sends its name at once and holds the rest.
		name, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil {
			return err
		}
		long = append(long, strings.TrimSpace(name))
	}
	short, err := d.burst(url, 6)
	if err != nil {
		return err
	}
	close(d.bk.release) // let the long requests finish
	for _, b := range bodies {
		io.Copy(io.Discard, b)
	}

	fmt.Fprintf(d.out, "\nLeast connections: lb.LeastConn(), 2 long requests held open, then 6 short ones\n")
	fmt.Fprintf(d.out, "  long     %s\n", strings.Join(long, " "))
	fmt.Fprintf(d.out, "  short    %s\n", strings.Join(short, " "))
	return nil
}

// consistentHash sends a few requests for each user: every user sticks to
// one backend, and a second balancer built on its own agrees.
func (d *demo) consistentHash() error {
	key := lb.HeaderKey("X-User")
	url, stop, err := d.front(lb.ConsistentHash(key))
	if err != nil {
		return err
	}
	defer stop()
	url2, stop2, err := d.front(lb.ConsistentHash(key))
	if err != nil {
		return err
	}
	defer stop2()

	fmt.Fprintf(d.out, "\nConsistent hash: lb.ConsistentHash(lb.HeaderKey(\"X-User\")), 3 requests per user\n")
	users := []string{"alice", "bob", "carol", "dave", "erin", "frank"}
	agree := 0
	for _, user := range users {
		var seq []string
		for range 3 {
			name, err := d.get(url, "X-User", user)
			if err != nil {
				return err
			}
			seq = append(seq, name)
		}
		other, err := d.get(url2, "X-User", user)
		if err != nil {
			return err
		}
		if other == seq[0] {
			agree++
		}
		fmt.Fprintf(d.out, "  %-8s %s\n", user, strings.Join(seq, " "))
	}
	fmt.Fprintf(d.out, "  a second, independent balancer agrees on %d of %d users\n", agree, len(users))
	return nil
}

// serve runs a smooth weighted balancer on ln until d.ctx ends, then shuts
// the server down gracefully and closes the balancer.
func (d *demo) serve(ln net.Listener) error {
	bal, err := d.balancer(lb.SmoothWeighted(), 5, 1, 1)
	if err != nil {
		return err
	}
	defer bal.Close()
	srv := &http.Server{Handler: bal, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	base := "http://" + ln.Addr().String()
	fmt.Fprintf(d.out, "\nServing lb.SmoothWeighted() over a=5 b=1 c=1 on %s. Try:\n", base)
	fmt.Fprintf(d.out, "  for i in 1 2 3 4 5 6 7; do curl -s %s/; done\n", base)
	fmt.Fprintf(d.out, "Ctrl-C to stop.\n")

	select {
	case err := <-errc:
		return err
	case <-d.ctx.Done():
	}
	fmt.Fprintf(d.out, "\nShutting down.\n")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		srv.Close()
	}
	<-errc
	return err
}
