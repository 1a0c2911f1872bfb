package lb_test

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
	"github.com/tinylb/lb/strategy"
)

// startBackends starts one local server per name, each answering with its
// name, and returns their URLs and a function that stops them.
func startBackends(names ...string) (urls []string, stop func()) {
	var servers []*httptest.Server
	for _, name := range names {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, name)
		}))
		servers = append(servers, srv)
		urls = append(urls, srv.URL)
	}
	return urls, func() {
		for _, s := range servers {
			s.Close()
		}
	}
}

// poolOver makes a pool of the backends at urls, with the given weights (1 if
// there are fewer weights than URLs).
func poolOver(urls []string, weights ...int) *lb.Pool {
	var bs []*lb.Backend
	for i, u := range urls {
		w := 1
		if i < len(weights) {
			w = weights[i]
		}
		b, err := lb.NewBackend(u, lb.WithWeight(w))
		if err != nil {
			log.Fatal(err)
		}
		bs = append(bs, b)
	}
	p, err := lb.NewPool(bs...)
	if err != nil {
		log.Fatal(err)
	}
	return p
}

// getN sends n GETs to url and returns the answers, space separated.
func getN(url string, n int, header http.Header) string {
	var out []string
	for range n {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		out = append(out, string(body))
	}
	return strings.Join(out, " ")
}

func ExampleNew() {
	// Two backends that tell who served which path.
	var urls []string
	for _, name := range []string{"a", "b"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s served %s", name, r.URL.Path)
		}))
		defer srv.Close()
		urls = append(urls, srv.URL)
	}

	a, err := lb.NewBackend(urls[0])
	if err != nil {
		log.Fatal(err)
	}
	b, err := lb.NewBackend(urls[1])
	if err != nil {
		log.Fatal(err)
	}
	pool, err := lb.NewPool(a, b)
	if err != nil {
		log.Fatal(err)
	}
	bal := lb.New(pool, lb.RoundRobin())
	defer bal.Close()

	// The balancer is an http.Handler: mount it under /api/.
	mux := http.NewServeMux()
	mux.Handle("/api/", http.StripPrefix("/api", bal))
	front := httptest.NewServer(mux)
	defer front.Close()

	for range 4 {
		resp, err := http.Get(front.URL + "/api/users")
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, string(body))
	}
	// Output:
	// 200 a served /users
	// 200 b served /users
	// 200 a served /users
	// 200 b served /users
}

func ExampleRoundRobin() {
	urls, stop := startBackends("a", "b", "c")
	defer stop()
	bal := lb.New(poolOver(urls), lb.RoundRobin())
	defer bal.Close()
	front := httptest.NewServer(bal)
	defer front.Close()

	fmt.Println(getN(front.URL, 6, nil))
	// Output:
	// a b c a b c
}

func ExampleSmoothWeighted() {
	urls, stop := startBackends("a", "b", "c")
	defer stop()
	// Weights 5, 1 and 1: a gets five requests in seven, spread out.
	bal := lb.New(poolOver(urls, 5, 1, 1), lb.SmoothWeighted())
	defer bal.Close()
	front := httptest.NewServer(bal)
	defer front.Close()

	fmt.Println(getN(front.URL, 7, nil))
	fmt.Println(getN(front.URL, 7, nil))
	// Output:
	// a a b a c a a
	// a a b a c a a
}

func ExampleLeastConn() {
	// Backend a is slow on /report: it answers only when told to.
	busy, release := make(chan struct{}), make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/report" {
			close(busy)
			<-release
		}
		io.WriteString(w, "a")
	}))
	defer slow.Close()
	urls, stop := startBackends("b")
	defer stop()

	bal := lb.New(poolOver([]string{slow.URL, urls[0]}), lb.LeastConn())
	defer bal.Close()
	front := httptest.NewServer(bal)
	defer front.Close()

	done := make(chan string)
	go func() { done <- getN(front.URL+"/report", 1, nil) }()
	<-busy
	// While a works on the report, the other requests go to b.
	fmt.Println("while a is busy:", getN(front.URL, 3, nil))
	close(release)
	fmt.Println("report served by", <-done)
	// Output:
	// while a is busy: b b b
	// report served by a
}

func ExampleLeastRequest() {
	// Backend a is slow on /report: it answers only when told to.
	busy, release := make(chan struct{}), make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/report" {
			close(busy)
			<-release
		}
		io.WriteString(w, "a")
	}))
	defer slow.Close()
	urls, stop := startBackends("b", "c")
	defer stop()

	bal := lb.New(poolOver([]string{slow.URL, urls[0], urls[1]}), lb.LeastRequest())
	defer bal.Close()
	front := httptest.NewServer(bal)
	defer front.Close()

	done := make(chan string)
	go func() { done <- getN(front.URL+"/report", 1, nil) }()
	<-busy
	// While a works on the report, a request goes to it only when both
	// of its draws are a: one in nine.
	served := map[string]int{}
	for _, s := range strings.Fields(getN(front.URL, 180, nil)) {
		served[s]++
	}
	fmt.Println("a served the fewest:", served["a"] < served["b"] && served["a"] < served["c"])
	close(release)
	fmt.Println("report served by", <-done)
	// Output:
	// a served the fewest: true
	// report served by a
}

func ExamplePeakEWMA() {
	// Backend a takes 20 ms to answer, b and c answer at once.
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		io.WriteString(w, "a")
	}))
	defer slow.Close()
	urls, stop := startBackends("b", "c")
	defer stop()

	bal := lb.New(poolOver([]string{slow.URL, urls[0], urls[1]}), lb.PeakEWMA())
	defer bal.Close()
	front := httptest.NewServer(bal)
	defer front.Close()

	// Once a has answered, its latency average is far above the others':
	// it gets a request only when both draws are a.
	served := map[string]int{}
	for _, s := range strings.Fields(getN(front.URL, 180, nil)) {
		served[s]++
	}
	fmt.Println("a served the fewest:", served["a"] < served["b"] && served["a"] < served["c"])
	fmt.Println("a served under a quarter:", served["a"] < 180/4)
	// Output:
	// a served the fewest: true
	// a served under a quarter: true
}

func ExampleConsistentHash() {
	urls, stop := startBackends("a", "b", "c", "d")
	defer stop()
	// Requests of one user go to one backend.
	bal := lb.New(poolOver(urls), lb.ConsistentHash(lb.HeaderKey("X-User")))
	defer bal.Close()
	front := httptest.NewServer(bal)
	defer front.Close()

	for _, user := range []string{"alice", "bob", "carol"} {
		served := strings.Fields(getN(front.URL, 5, http.Header{"X-User": {user}}))
		same := true
		for _, s := range served {
			same = same && s == served[0]
		}
		fmt.Printf("%s: %d requests, all on one backend: %v\n", user, len(served), same)
	}
	// Output:
	// alice: 5 requests, all on one backend: true
	// bob: 5 requests, all on one backend: true
	// carol: 5 requests, all on one backend: true
}

func ExampleBoundedHash() {
	// Three backends. A request with an X-Hold header stays in flight until
	// released.
	release, arrived := make(chan struct{}), make(chan string)
	var urls []string
	for _, name := range []string{"a", "b", "c"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-Hold") != "" {
				arrived <- name
				<-release
			}
			io.WriteString(w, name)
		}))
		defer srv.Close()
		urls = append(urls, srv.URL)
	}
	// Where a plain consistent hash sends alice.
	plain := lb.New(poolOver(urls), lb.ConsistentHash(lb.HeaderKey("X-User")))
	defer plain.Close()
	plainFront := httptest.NewServer(plain)
	defer plainFront.Close()
	home := getN(plainFront.URL, 1, http.Header{"X-User": {"alice"}})

	// No backend may take more than 1.25 times the average of the
	// requests in flight (rounded up).
	bal := lb.New(poolOver(urls), lb.BoundedHash(lb.HeaderKey("X-User"), 1.25))
	defer bal.Close()
	front := httptest.NewServer(bal)
	defer front.Close()
	held := http.Header{"X-User": {"alice"}, "X-Hold": {"1"}}
	done := make(chan string, 2)
	go func() { done <- getN(front.URL, 1, held) }()
	first := <-arrived
	go func() { done <- getN(front.URL, 1, held) }()
	second := <-arrived
	fmt.Println("alice's first request goes to her backend:", first == home)
	fmt.Println("her second, with the first in flight, goes to another:", second != home)
	close(release)
	<-done
	<-done
	// Output:
	// alice's first request goes to her backend: true
	// her second, with the first in flight, goes to another: true
}

// primaryFirst is a custom strategy: every request goes to the first
// usable backend in pool order, so the backends after it are standbys that
// take traffic only when it is down, removed, or failed the request.
type primaryFirst struct{}

// Picker is called whenever the pool or the health of its backends
// changes; the picker it returns serves requests until the next change.
func (primaryFirst) Picker(set *strategy.Set) strategy.Picker {
	return primaryPicker{set}
}

type primaryPicker struct{ set *strategy.Set }

// Pick returns the position in set.All of the first usable backend the
// request has not tried yet, or -1.
func (p primaryPicker) Pick(_ *http.Request, tried *strategy.Tried) int {
	for _, i := range p.set.Usable {
		if !tried.Has(p.set.All[i]) {
			return i
		}
	}
	return -1
}

func Example_customStrategy() {
	urls, stop := startBackends("primary", "standby")
	defer stop()
	pool := poolOver(urls)
	bal := lb.New(pool, primaryFirst{})
	defer bal.Close()
	front := httptest.NewServer(bal)
	defer front.Close()

	fmt.Println(getN(front.URL, 3, nil))
	if err := pool.Remove(urls[0]); err != nil {
		log.Fatal(err)
	}
	fmt.Println(getN(front.URL, 3, nil))
	// Output:
	// primary primary primary
	// standby standby standby
}

func Example_healthCheck() {
	// b fails its health check.
	healthy := func(name string, ok bool) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/healthz" && !ok {
				http.Error(w, "broken", http.StatusInternalServerError)
				return
			}
			io.WriteString(w, name)
		}))
	}
	a, b := healthy("a", true), healthy("b", false)
	defer a.Close()
	defer b.Close()

	p := poolOver([]string{a.URL, b.URL})
	bal := lb.New(p, lb.RoundRobin(), lb.WithHealthCheck(&health.HTTPCheck{
		Path:      "/healthz",
		Interval:  time.Minute,
		StartDown: true, // no traffic before a first check passes
	}))
	defer bal.Close()
	front := httptest.NewServer(bal)
	defer front.Close()

	for !p.Backends()[0].Alive() {
		time.Sleep(time.Millisecond) // the first check runs at once
	}
	fmt.Println("b alive:", p.Backends()[1].Alive())
	fmt.Println(getN(front.URL, 3, nil))
	// Output:
	// b alive: false
	// a a a
}
