package lb_test

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"expvar"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
)

// nameOf maps backend URLs back to the names startBackends gave them.
func nameOf(urls []string, names ...string) map[string]string {
	m := make(map[string]string, len(urls))
	for i, u := range urls {
		m[u] = names[i]
	}
	return m
}

// stateOf returns the state of the backend at u as bal sees it.
func stateOf(bal *lb.Balancer, u string) lb.State {
	for _, bs := range bal.Stats().Backends {
		if bs.URL == u {
			return bs.State
		}
	}
	return lb.StateClosed
}

func ExampleStatusHandler() {
	urls, stop := startBackends("a", "b")
	defer stop()
	names := nameOf(urls, "a", "b")
	bal := lb.New(poolOver(urls), lb.RoundRobin())
	defer bal.Close()

	// The page under /status/, with its actions open to one bearer token:
	// scripts act with that token alone, browsers (basic credentials,
	// cookies) with the token embedded in the page too.
	const token = "a-long-random-operator-token"
	authorize := func(r *http.Request) bool {
		got := []byte(r.Header.Get("Authorization"))
		return subtle.ConstantTimeCompare(got, []byte("Bearer "+token)) == 1
	}
	mux := http.NewServeMux()
	mux.Handle("/", bal)
	mux.Handle("/status/", http.StripPrefix("/status", lb.StatusHandler(bal, lb.WithStatusActions(authorize))))
	front := httptest.NewServer(mux)
	defer front.Close()

	fmt.Println(getN(front.URL+"/", 2, nil))

	// What the page shows, as JSON.
	resp, err := http.Get(front.URL + "/status/json")
	if err != nil {
		log.Fatal(err)
	}
	var status struct {
		Backends []struct {
			URL      string
			State    string
			Requests int64
		}
	}
	err = json.NewDecoder(resp.Body).Decode(&status)
	resp.Body.Close()
	if err != nil {
		log.Fatal(err)
	}
	for _, b := range status.Backends {
		fmt.Println(names[b.URL], b.State, b.Requests)
	}

	// Take b out by hand, as
	//	curl -H "Authorization: Bearer $TOKEN" -H 'Accept: application/json' \
	//	  -d action=maintenance-on --data-urlencode backend=URL .../status/
	form := url.Values{"action": {"maintenance-on"}, "backend": {urls[1]}}
	req, _ := http.NewRequest(http.MethodPost, front.URL+"/status/", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	var answer struct {
		OK     bool
		Action string
	}
	err = json.NewDecoder(resp.Body).Decode(&answer)
	resp.Body.Close()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.StatusCode, answer.Action, answer.OK)
	fmt.Println(getN(front.URL+"/", 2, nil))
	// Output:
	// a b
	// a up 1
	// b up 1
	// 200 maintenance-on true
	// a a
}

// expvarRun numbers the runs of ExampleBalancer_PublishExpvar: expvar
// names live as long as the process, and go test -count N runs the
// example N times in one.
var expvarRun atomic.Int64

func ExampleBalancer_PublishExpvar() {
	urls, stop := startBackends("a", "b")
	defer stop()
	bal := lb.New(poolOver(urls), lb.RoundRobin())
	defer bal.Close()
	front := httptest.NewServer(bal)
	defer front.Close()
	fmt.Println(getN(front.URL, 3, nil))

	// One name per balancer, once per process; a program publishes
	// "tinylb", or one name per balancer it runs.
	name := "tinylb"
	if n := expvarRun.Add(1); n > 1 {
		name = fmt.Sprintf("tinylb_%d", n)
	}
	if err := bal.PublishExpvar(name); err != nil {
		log.Fatal(err)
	}
	fmt.Println(bal.PublishExpvar(""))

	// expvar's handler (mounted at /debug/vars by importing expvar) reads
	// the balancer's Stats afresh on every request.
	vars := httptest.NewServer(expvar.Handler())
	defer vars.Close()
	resp, err := http.Get(vars.URL)
	if err != nil {
		log.Fatal(err)
	}
	var all map[string]json.RawMessage
	err = json.NewDecoder(resp.Body).Decode(&all)
	resp.Body.Close()
	if err != nil {
		log.Fatal(err)
	}
	var st struct { // a few fields of lb.Stats
		Requests int64
		Backends []struct{ URL, State string }
	}
	if err := json.Unmarshal(all[name], &st); err != nil {
		log.Fatal(err)
	}
	fmt.Println("backends:", len(st.Backends), "requests:", st.Requests, "state of the first:", st.Backends[0].State)
	// Output:
	// a b a
	// lb: PublishExpvar: empty expvar name
	// backends: 2 requests: 3 state of the first: up
}

func ExamplePool_Drain() {
	// a holds a request on /slow until told to answer it.
	busy, release := make(chan struct{}), make(chan struct{})
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(busy)
			<-release
		}
		io.WriteString(w, "a")
	}))
	defer a.Close()
	urls, stop := startBackends("b")
	defer stop()
	pool := poolOver([]string{a.URL, urls[0]})
	bal := lb.New(pool, lb.RoundRobin())
	defer bal.Close()
	front := httptest.NewServer(bal)
	defer front.Close()

	slow := make(chan string)
	go func() { slow <- getN(front.URL+"/slow", 1, nil) }()
	<-busy

	drained := make(chan error)
	go func() { drained <- pool.Drain(context.Background(), a.URL) }()
	for stateOf(bal, a.URL) != lb.StateDraining {
		time.Sleep(time.Millisecond) // Drain publishes at once, then waits
	}
	// a takes no new request, and its request in flight goes on.
	fmt.Println("while a drains:", getN(front.URL, 3, nil))
	close(release)
	fmt.Println("the slow request, served by", <-slow)
	fmt.Println("Drain:", <-drained)

	// Now a can go without cutting anything.
	if err := pool.Remove(a.URL); err != nil {
		log.Fatal(err)
	}
	fmt.Println("backends left:", pool.Len())
	// Output:
	// while a drains: b b b
	// the slow request, served by a
	// Drain: <nil>
	// backends left: 1
}

func ExamplePool_Update() {
	urls, stop := startBackends("a", "b", "c")
	defer stop()
	names := nameOf(urls, "a", "b", "c")
	pool := poolOver(urls[:2])
	bal := lb.New(pool, lb.RoundRobin())
	defer bal.Close()
	front := httptest.NewServer(bal)
	defer front.Close()
	fmt.Println(getN(front.URL, 4, nil))

	// Discovery now lists b (at weight 3) and c: b keeps its Backend, with
	// its counters and health, and takes the new weight; a goes, c comes.
	b, err := lb.NewBackend(urls[1], lb.WithWeight(3))
	if err != nil {
		log.Fatal(err)
	}
	c, err := lb.NewBackend(urls[2])
	if err != nil {
		log.Fatal(err)
	}
	if err := pool.Update(b, c); err != nil {
		log.Fatal(err)
	}
	for _, bs := range bal.Stats().Backends {
		fmt.Printf("%s weight %d, %d requests so far\n", names[bs.URL], bs.Weight, bs.Requests)
	}
	fmt.Println(getN(front.URL, 4, nil))
	// Output:
	// a b a b
	// b weight 3, 2 requests so far
	// c weight 1, 0 requests so far
	// b c b c
}

func ExampleWithPassiveHealth() {
	// a is overloaded: it answers 503.
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "a is overloaded", http.StatusServiceUnavailable)
	}))
	defer a.Close()
	urls, stop := startBackends("b")
	defer stop()

	// One 503 within a minute takes a backend out for a minute.
	bal := lb.New(poolOver([]string{a.URL, urls[0]}), lb.RoundRobin(),
		lb.WithPassiveHealth(health.Passive{
			MaxFails:     1,
			FailTimeout:  time.Minute,
			FailStatuses: []int{503},
		}))
	defer bal.Close()
	front := httptest.NewServer(bal)
	defer front.Close()

	resp, err := http.Get(front.URL)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println("first request:", resp.StatusCode)
	for stateOf(bal, a.URL) != lb.StateEjected {
		time.Sleep(time.Millisecond) // the outcome is judged as the attempt ends
	}
	fmt.Println("then:", getN(front.URL, 3, nil))
	// Output:
	// first request: 503
	// then: b b b
}
