package lb_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
)

// payloadSize is the size of the body payload answers.
const payloadSize = 16 << 10

// payloadFor is the body payload answers to the request with the given id.
func payloadFor(id string) []byte {
	h := fnv.New64a()
	io.WriteString(h, id)
	return pseudoRandom(payloadSize, h.Sum64())
}

// payload answers with a body determined by the request id.
func payload(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		w.Write(payloadFor(r.Header.Get(reqIDHeader)))
	}
}

// TestDeadBackendZeroErrors: with one backend of three refusing
// connections, 300 GETs from 10 clients all succeed, each with its own
// body whole, and each reaches exactly one live backend once.
func TestDeadBackendZeroErrors(t *testing.T) {
	t.Parallel()
	a := startUpstream(t, "a", payload("a"))
	c := startUpstream(t, "c", payload("c"))
	pool, _ := poolOf(t, a.url, refusingURL(t), c.url)
	g := startGateway(t, pool, lb.RoundRobin())
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		errs   []string
		served = map[string]int{}
	)
	for w := range 10 {
		wg.Go(func() {
			for i := range 30 {
				id := fmt.Sprintf("dead-%d-%d", w, i)
				r, err := g.do(context.Background(), http.MethodGet, "/", id, nil, nil)
				mu.Lock()
				switch {
				case err != nil:
					errs = append(errs, err.Error())
				case r.status != http.StatusOK:
					errs = append(errs, fmt.Sprintf("%s: status %d", id, r.status))
				case string(r.body) != string(payloadFor(id)):
					errs = append(errs, fmt.Sprintf("%s: body of %d bytes differs from the backend's", id, len(r.body)))
				default:
					served[r.header.Get("X-Backend")]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of 300 requests failed with a dead backend in the pool; first: %s", len(errs), errs[0])
	}
	if served["a"]+served["c"] != 300 {
		t.Errorf("served %v; want 300 by a and c", served)
	}
	for w := range 10 {
		for i := range 30 {
			id := fmt.Sprintf("dead-%d-%d", w, i)
			if n := a.hits(id) + c.hits(id); n != 1 {
				t.Fatalf("request %s reached the live backends %d times; want 1", id, n)
			}
		}
	}
}

// sendBody sends a request with a body and returns the answer.
func sendBody(t *testing.T, g *gateway, method, id string, body []byte, hdr http.Header) outcome {
	t.Helper()
	r, err := g.do(context.Background(), method, "/upload", id, body, hdr)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	return r
}

// checkBody fails the test unless b got the request id once with exactly
// body.
func checkBody(t *testing.T, b *upstream, id string, body []byte) {
	t.Helper()
	s := b.get(t, id)
	if s.bodyErr != nil || s.bodyLen != len(body) || s.bodySum != sha256.Sum256(body) {
		t.Errorf("backend %s got a body of %d bytes (read error %v) that differs from the %d sent",
			b.name, s.bodyLen, s.bodyErr, len(body))
	}
}

// TestPostRetriedOnlyWhenNothingSent: a request is sent again only if no
// byte of it reached a backend, or if it is idempotent and its body was
// kept; what is retried arrives byte for byte (reliability.md F3).
func TestPostRetriedOnlyWhenNothingSent(t *testing.T) {
	t.Parallel()
	for _, size := range []int{1 << 10, 1 << 20, 3 << 20} {
		t.Run(fmt.Sprintf("dial refused, POST of %d bytes", size), func(t *testing.T) {
			t.Parallel()
			live := startUpstream(t, "live", nil)
			other := startUpstream(t, "other", nil)
			pool, _ := poolOf(t, refusingURL(t), live.url, other.url)
			g := startGateway(t, pool, lb.RoundRobin())
			body := pseudoRandom(size, uint64(size))
			r := sendBody(t, g, http.MethodPost, "post-1", body, nil)
			if r.status != http.StatusOK || string(r.body) != "live|post-1" {
				t.Fatalf("status %d, body %q; want 200 from live", r.status, r.body)
			}
			checkBody(t, live, "post-1", body)
			if n := other.hits("post-1"); n != 0 {
				t.Errorf("other backend saw the POST %d times; want 0", n)
			}
		})
	}

	for _, tc := range []struct {
		name   string
		bad    http.HandlerFunc
		method string
		hdr    http.Header
	}{
		{"POST, backend hangs up after reading it", hangup, http.MethodPost, nil},
		{"POST, backend resets after reading it", reset, http.MethodPost, nil},
		{"PATCH, backend hangs up after reading it", hangup, http.MethodPatch, nil},
		{"POST with Idempotency-Key", hangup, http.MethodPost, http.Header{"Idempotency-Key": {"k-1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bad := startUpstream(t, "bad", tc.bad)
			good := startUpstream(t, "good", nil)
			pool, bes := poolOf(t, bad.url, good.url)
			g := startGateway(t, pool, lb.RoundRobin())
			body := pseudoRandom(64<<10, 7)
			r := sendBody(t, g, tc.method, "once", body, tc.hdr)
			if r.status != http.StatusBadGateway {
				t.Errorf("status %d, body %q; want 502", r.status, r.body)
			}
			checkBody(t, bad, "once", body)
			if n := good.hits("once"); n != 0 {
				t.Errorf("a %s that reached a backend was sent again: good saw it %d times", tc.method, n)
			}
			for _, be := range bes {
				eventually(t, "in-flight counts back to 0", func() bool { return be.Active() == 0 })
			}
		})
	}

	t.Run("idempotent PUT sent then failed is retried whole", func(t *testing.T) {
		t.Parallel()
		bad := startUpstream(t, "bad", hangup)
		good := startUpstream(t, "good", nil)
		pool, _ := poolOf(t, bad.url, good.url)
		g := startGateway(t, pool, lb.RoundRobin())
		body := pseudoRandom(256<<10, 11)
		r := sendBody(t, g, http.MethodPut, "put", body, nil)
		if r.status != http.StatusOK || string(r.body) != "good|put" {
			t.Fatalf("status %d, body %q; want 200 from good", r.status, r.body)
		}
		checkBody(t, bad, "put", body)
		checkBody(t, good, "put", body)
	})

	t.Run("PUT larger than BodyBuffer is not retried once sent", func(t *testing.T) {
		t.Parallel()
		bad := startUpstream(t, "bad", hangup)
		good := startUpstream(t, "good", nil)
		pool, _ := poolOf(t, bad.url, good.url)
		g := startGateway(t, pool, lb.RoundRobin(), lb.WithRetry(lb.RetryPolicy{BodyBuffer: 4 << 10}))
		body := pseudoRandom(64<<10, 13)
		r := sendBody(t, g, http.MethodPut, "big-put", body, nil)
		if r.status != http.StatusBadGateway {
			t.Errorf("status %d; want 502", r.status)
		}
		checkBody(t, bad, "big-put", body)
		if n := good.hits("big-put"); n != 0 {
			t.Errorf("PUT whose body outgrew the buffer was sent again (%d times)", n)
		}
	})

	t.Run("PUT larger than BodyBuffer is retried after a refused dial", func(t *testing.T) {
		t.Parallel()
		good := startUpstream(t, "good", nil)
		pool, _ := poolOf(t, refusingURL(t), good.url)
		g := startGateway(t, pool, lb.RoundRobin(), lb.WithRetry(lb.RetryPolicy{BodyBuffer: 4 << 10}))
		body := pseudoRandom(64<<10, 17)
		if r := sendBody(t, g, http.MethodPut, "big-put", body, nil); r.status != http.StatusOK {
			t.Fatalf("status %d; want 200", r.status)
		}
		checkBody(t, good, "big-put", body)
	})

	t.Run("NonIdempotent opt-in retries a sent POST whole", func(t *testing.T) {
		t.Parallel()
		bad := startUpstream(t, "bad", hangup)
		good := startUpstream(t, "good", nil)
		pool, _ := poolOf(t, bad.url, good.url)
		g := startGateway(t, pool, lb.RoundRobin(), lb.WithRetry(lb.RetryPolicy{NonIdempotent: true}))
		body := pseudoRandom(32<<10, 19)
		if r := sendBody(t, g, http.MethodPost, "opt-in", body, nil); r.status != http.StatusOK {
			t.Fatalf("status %d; want 200", r.status)
		}
		checkBody(t, bad, "opt-in", body)
		checkBody(t, good, "opt-in", body)
	})
}

// TestRetryGoesToDifferentBackends: each attempt of a request goes to a
// backend it has not tried, up to Tries attempts and never more than the
// pool holds.
func TestRetryGoesToDifferentBackends(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		backends int
		policy   *lb.RetryPolicy
		want     int
	}{
		{"default tries", 5, nil, 3},
		{"tries 1 disables retries", 5, &lb.RetryPolicy{Tries: 1}, 1},
		{"tries 2", 5, &lb.RetryPolicy{Tries: 2}, 2},
		{"tries above pool size", 5, &lb.RetryPolicy{Tries: 10}, 5},
		{"default tries, pool of 2", 2, nil, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var ups []*upstream
			for i := range tc.backends {
				ups = append(ups, startUpstream(t, fmt.Sprint("bad", i), hangup))
			}
			pool, bes := poolOf(t, urlsOf(ups...)...)
			opts := []lb.Option{lb.WithPassiveHealth(health.Passive{MaxFails: -1})}
			if tc.policy != nil {
				opts = append(opts, lb.WithRetry(*tc.policy))
			}
			g := startGateway(t, pool, lb.RoundRobin(), opts...)
			for req := range 3 {
				id := fmt.Sprint("r", req)
				r := g.mustDo(t, http.MethodGet, "/", id, nil, nil)
				if r.status != http.StatusBadGateway {
					t.Errorf("status %d; want 502", r.status)
				}
				total := 0
				for _, u := range ups {
					n := u.hits(id)
					if n > 1 {
						t.Errorf("backend %s tried %d times for one request; want at most once", u.name, n)
					}
					total += n
				}
				if total != tc.want {
					t.Errorf("request %s made %d attempts; want %d", id, total, tc.want)
				}
			}
			for _, be := range bes {
				eventually(t, "in-flight counts back to 0", func() bool { return be.Active() == 0 })
			}
		})
	}
}

// statusAnswer answers status with headers naming the backend.
func statusAnswer(name string, status int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-From", name)
		w.Header().Set("X-Only-"+name, "1")
		w.WriteHeader(status)
		io.WriteString(w, name)
	}
}

// TestRetryStatuses: with RetryPolicy.Statuses, an idempotent request
// answered with a listed status is tried on another backend; when the
// tries run out the client gets the last answer, with nothing of the
// earlier ones.
func TestRetryStatuses(t *testing.T) {
	t.Parallel()
	pol := lb.WithRetry(lb.RetryPolicy{Statuses: []int{503}})
	type want struct {
		status int
		from   string
		hits   []int
	}
	for _, tc := range []struct {
		name     string
		statuses []int
		method   string
		opts     []lb.Option
		want     want
	}{
		{"GET, all 503", []int{503, 503, 503, 503}, http.MethodGet, []lb.Option{pol}, want{503, "b2", []int{1, 1, 1, 0}}},
		{"GET, 503 then 200", []int{503, 200, 200}, http.MethodGet, []lb.Option{pol}, want{200, "b1", []int{1, 1, 0}}},
		{"GET, pool smaller than tries", []int{503, 503}, http.MethodGet, []lb.Option{pol}, want{503, "b1", []int{1, 1}}},
		{"GET, 500 not listed", []int{500, 200}, http.MethodGet, []lb.Option{pol}, want{500, "b0", []int{1, 0}}},
		{"GET, no Statuses", []int{503, 200}, http.MethodGet, nil, want{503, "b0", []int{1, 0}}},
		{"POST answered 503", []int{503, 200}, http.MethodPost, []lb.Option{pol}, want{503, "b0", []int{1, 0}}},
		{"DELETE, 503 then 200", []int{503, 200}, http.MethodDelete, []lb.Option{pol}, want{200, "b1", []int{1, 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var ups []*upstream
			for i, st := range tc.statuses {
				name := fmt.Sprint("b", i)
				ups = append(ups, startUpstream(t, name, statusAnswer(name, st)))
			}
			pool, bes := poolOf(t, urlsOf(ups...)...)
			g := startGateway(t, pool, lb.RoundRobin(), tc.opts...)
			var body []byte
			if tc.method == http.MethodPost {
				body = []byte("payload")
			}
			r := g.mustDo(t, tc.method, "/", "s", body, nil)
			if r.status != tc.want.status || string(r.body) != tc.want.from {
				t.Errorf("status %d, body %q; want %d from %s", r.status, r.body, tc.want.status, tc.want.from)
			}
			if got := r.header.Values("X-From"); len(got) != 1 || got[0] != tc.want.from {
				t.Errorf("X-From %q; want only %q", got, tc.want.from)
			}
			for _, u := range ups {
				if u.name != tc.want.from && r.header.Get("X-Only-"+u.name) != "" {
					t.Errorf("header of the failed attempt on %s leaked into the answer: %v", u.name, r.header)
				}
			}
			for i, u := range ups {
				if n := u.hits("s"); n != tc.want.hits[i] {
					t.Errorf("backend %s saw the request %d times; want %d", u.name, n, tc.want.hits[i])
				}
			}
			for _, be := range bes {
				eventually(t, "in-flight counts back to 0", func() bool { return be.Active() == 0 })
			}
		})
	}
}

// TestClientCancel: a client that goes away cancels the backend's request;
// it is not retried and does not count against the backend.
func TestClientCancel(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{}, 1)
	canceled := make(chan struct{}, 1)
	var calls atomic.Int64
	slow := startUpstream(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) > 1 {
			answerName(w, r, "slow")
			return
		}
		arrived <- struct{}{}
		<-r.Context().Done()
		canceled <- struct{}{}
	})
	other := startUpstream(t, "other", nil)
	pool, bes := poolOf(t, slow.url, other.url)
	var rec errRecorder
	logs := &logRecorder{}
	bal := lb.New(pool, lb.RoundRobin(),
		lb.WithPassiveHealth(&health.Passive{MaxFails: 1, FailTimeout: time.Minute}),
		lb.WithErrorHandler(rec.handle),
		lb.WithLogger(slog.New(logs)))
	served := make(chan struct{}, 10)
	g := serveGateway(t, bal, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { served <- struct{}{} }()
		bal.ServeHTTP(w, r)
	}))

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := g.do(ctx, http.MethodGet, "/", "cancel-me", nil, nil)
		errc <- err
	}()
	await(t, arrived, "the request to reach the backend")
	cancel()
	if err := await(t, errc, "the client to give up"); !errors.Is(err, context.Canceled) {
		t.Errorf("client error %v; want context.Canceled", err)
	}
	await(t, canceled, "the backend's request context to end")
	await(t, served, "the balancer to finish the request")

	if n := other.hits("cancel-me"); n != 0 {
		t.Errorf("cancelled request was retried on another backend (%d times)", n)
	}
	if n := slow.hits("cancel-me"); n != 1 {
		t.Errorf("slow backend saw the request %d times; want 1", n)
	}
	if !bes[0].Alive() {
		t.Error("a client cancel took the backend out (MaxFails 1)")
	}
	for _, be := range bes {
		eventually(t, "in-flight counts back to 0", func() bool { return be.Active() == 0 })
	}
	for _, err := range rec.all() {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("ErrorHandler got %v; want an error wrapping context.Canceled", err)
		}
	}
	// Logged as 499, the client's doing, and not as a failure.
	var logged499 bool
	for _, r := range logs.all() {
		st, ok := attr(r, "status")
		if ok && st.Int64() == 499 {
			logged499 = true
		}
		if r.Level >= slog.LevelWarn {
			t.Errorf("client cancel logged at %v: %q %v", r.Level, r.Message, st)
		}
	}
	if !logged499 {
		t.Error("client cancel not logged with status 499")
	}
	// Both backends still take their turns.
	got := map[string]int{}
	for range 4 {
		got[g.served(t, nil)]++
		await(t, served, "request end")
	}
	if got["slow"] != 2 || got["other"] != 2 {
		t.Errorf("after the cancel, 4 requests went %v; want 2 each", got)
	}
}

// logRecorder is a slog.Handler that keeps every record.
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.recs = append(l.recs, r.Clone())
	l.mu.Unlock()
	return nil
}

func (l *logRecorder) all() []slog.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]slog.Record(nil), l.recs...)
}

// attr returns the value of the record's attribute key.
func attr(r slog.Record, key string) (v slog.Value, ok bool) {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v, ok = a.Value, true
			return false
		}
		return true
	})
	return v, ok
}

// sse serves three events on /events, sending each only once the test
// says the client got the one before; other paths get the default answer.
func sse(name string, next <-chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/events" {
			answerName(w, r, name)
			return
		}
		rc := http.NewResponseController(w)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("X-Backend", name)
		w.WriteHeader(http.StatusOK)
		for i := 1; i <= 3; i++ {
			fmt.Fprintf(w, "data: %d\n\n", i)
			if err := rc.Flush(); err != nil {
				return
			}
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	}
}

// TestServerSentEvents: events reach the client one by one, each before
// the backend sends the next; the stream counts as in flight for least
// connections until it ends.
func TestServerSentEvents(t *testing.T) {
	t.Parallel()
	next := make(chan struct{})
	a := startUpstream(t, "a", sse("a", next))
	b := startUpstream(t, "b", sse("b", next))
	pool, bes := poolOf(t, a.url, b.url)
	g := startGateway(t, pool, lb.LeastConn())

	req, _ := http.NewRequest(http.MethodGet, g.url+"/events", nil)
	resp, err := g.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	streamer := resp.Header.Get("X-Backend")
	idx := map[string]int{"a": 0, "b": 1}[streamer]
	events := make(chan string)
	go func() {
		defer close(events)
		br := bufio.NewReader(resp.Body)
		var ev strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\n" {
				events <- ev.String()
				ev.Reset()
				continue
			}
			ev.WriteString(line)
		}
	}()
	for i := 1; i <= 3; i++ {
		if got, want := await(t, events, fmt.Sprintf("event %d", i)), fmt.Sprintf("data: %d\n", i); got != want {
			t.Fatalf("event %d = %q; want %q", i, got, want)
		}
		if i == 1 {
			// The open stream is an active request: least connections
			// sends the next requests to the other backend.
			if n := bes[idx].Active(); n != 1 {
				t.Errorf("%s.Active() = %d with a stream open; want 1", streamer, n)
			}
			for range 3 {
				if got := g.served(t, nil); got == streamer {
					t.Errorf("least connections sent a request to %s, busy with a stream", streamer)
				}
				eventually(t, "other backend idle", func() bool { return bes[1-idx].Active() == 0 })
			}
		}
		next <- struct{}{} // only now may the backend send the next event
	}
	if ev, ok := <-events; ok {
		t.Errorf("unexpected event %q after the last", ev)
	}
	eventually(t, "stream no longer counted", func() bool { return bes[idx].Active() == 0 })
}

// TestServerSentEventsClientCloses: a stream the client closes stops
// counting as active.
func TestServerSentEventsClientCloses(t *testing.T) {
	t.Parallel()
	next := make(chan struct{}) // never sent: the stream stays open
	a := startUpstream(t, "a", sse("a", next))
	pool, bes := poolOf(t, a.url)
	g := startGateway(t, pool, lb.LeastConn())
	resp, err := g.c.Get(g.url + "/events")
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "data: 1\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	if n := bes[0].Active(); n != 1 {
		t.Errorf("Active() = %d with the stream open; want 1", n)
	}
	resp.Body.Close()
	eventually(t, "stream no longer counted after the client closed it", func() bool { return bes[0].Active() == 0 })
}

// hasToken reports whether a comma-separated header has token.
func hasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// upgrader answers a websocket-style upgrade with 101 and protocol proto,
// greets the client, then echoes each line it gets until the connection
// closes. Other requests get the default answer.
func upgrader(name, proto string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !hasToken(r.Header, "Connection", "upgrade") || !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			answerName(w, r, name)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", proto)
		fmt.Fprintf(brw, "hello from %s\n", name)
		brw.Flush()
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			brw.WriteString("echo: " + line)
			brw.Flush()
		}
	}
}

// dialUpgrade sends an upgrade request to g over a raw connection and
// reads the answer's head.
func dialUpgrade(t *testing.T, g *gateway) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", g.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: chat.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n%s: ws\r\n\r\n", reqIDHeader)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the upgrade answer: %v", err)
	}
	return conn, br, resp
}

// TestUpgrade: a websocket-style upgrade passes through both ways; the
// connection counts as active until it closes.
func TestUpgrade(t *testing.T) {
	t.Parallel()
	a := startUpstream(t, "a", upgrader("a", "websocket"))
	b := startUpstream(t, "b", upgrader("b", "websocket"))
	pool, bes := poolOf(t, a.url, b.url)
	g := startGateway(t, pool, lb.LeastConn())

	conn, br, resp := dialUpgrade(t, g)
	if resp.StatusCode != http.StatusSwitchingProtocols || !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		t.Fatalf("answer %d, Upgrade %q; want 101 websocket", resp.StatusCode, resp.Header.Get("Upgrade"))
	}
	greeting, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	var name string
	if _, err := fmt.Sscanf(greeting, "hello from %s\n", &name); err != nil || (name != "a" && name != "b") {
		t.Fatalf("greeting %q", greeting)
	}
	idx := map[string]int{"a": 0, "b": 1}[name]
	for i := range 3 {
		fmt.Fprintf(conn, "ping %d\n", i)
		line, err := br.ReadString('\n')
		if want := fmt.Sprintf("echo: ping %d\n", i); err != nil || line != want {
			t.Fatalf("echo %q, %v; want %q", line, err, want)
		}
	}
	if n := bes[idx].Active(); n != 1 {
		t.Errorf("%s.Active() = %d with an upgraded connection open; want 1", name, n)
	}
	if n := bes[1-idx].Active(); n != 0 {
		t.Errorf("other backend Active() = %d; want 0", n)
	}
	// Least connections counts the open connection.
	for range 3 {
		if got := g.served(t, nil); got == name {
			t.Errorf("least connections sent a request to %s, busy with an upgraded connection", name)
		}
		eventually(t, "other backend idle", func() bool { return bes[1-idx].Active() == 0 })
	}
	conn.Close()
	eventually(t, "upgraded connection no longer counted after close", func() bool { return bes[idx].Active() == 0 })
}

// TestUpgradeWrongProtocol: a backend switching to another protocol than
// the one asked for gets the client a 502, and the attempt is settled.
func TestUpgradeWrongProtocol(t *testing.T) {
	t.Parallel()
	a := startUpstream(t, "a", upgrader("a", "h2c"))
	other := startUpstream(t, "other", upgrader("other", "websocket"))
	pool, bes := poolOf(t, a.url, other.url)
	g := startGateway(t, pool, lb.RoundRobin())
	_, _, resp := dialUpgrade(t, g)
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("answer %d; want 502", resp.StatusCode)
	}
	if n := other.hits("ws"); n != 0 {
		t.Errorf("the upgrade was sent again to another backend (%d times)", n)
	}
	for _, be := range bes {
		eventually(t, "in-flight counts back to 0", func() bool { return be.Active() == 0 })
	}
}

// TestUpgradeNotRetried: a handshake that reached a backend is never sent
// again.
func TestUpgradeNotRetried(t *testing.T) {
	t.Parallel()
	bad := startUpstream(t, "bad", hangup)
	other := startUpstream(t, "other", upgrader("other", "websocket"))
	pool, _ := poolOf(t, bad.url, other.url)
	g := startGateway(t, pool, lb.RoundRobin())
	_, _, resp := dialUpgrade(t, g)
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("answer %d; want 502", resp.StatusCode)
	}
	if bad.hits("ws") != 1 || other.hits("ws") != 0 {
		t.Errorf("bad saw the handshake %d times, other %d; want 1 and 0", bad.hits("ws"), other.hits("ws"))
	}
}

// send sends req through g and returns the answer.
func (g *gateway) send(t *testing.T, req *http.Request) outcome {
	t.Helper()
	resp, err := g.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return outcome{status: resp.StatusCode, header: resp.Header, body: b}
}

// TestForwardingHeaders: the backend sees X-Forwarded-* set by the
// balancer from the connection, whatever the client sent, and its own
// host:port as Host.
func TestForwardingHeaders(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, "a", nil)
	pool, _ := poolOf(t, up.url)
	g := startGateway(t, pool, lb.RoundRobin())

	for i, conn := range []string{"", "X-Forwarded-For, X-Forwarded-Host, X-Forwarded-Proto, X-Real-IP, Forwarded"} {
		id := fmt.Sprint("fwd", i)
		req, _ := http.NewRequest(http.MethodGet, g.url+"/x", nil)
		req.Host = "shop.example"
		req.Header.Set(reqIDHeader, id)
		req.Header.Add("X-Forwarded-For", "6.6.6.6")
		req.Header.Add("X-Forwarded-For", "7.7.7.7, 8.8.8.8")
		req.Header.Set("X-Forwarded-Host", "evil.example")
		req.Header.Set("X-Forwarded-Proto", "https")
		req.Header.Set("Forwarded", "for=6.6.6.6;proto=https")
		req.Header.Set("X-Real-Ip", "6.6.6.6")
		if conn != "" {
			req.Header.Set("Connection", conn)
		}
		if r := g.send(t, req); r.status != http.StatusOK {
			t.Fatalf("status %d", r.status)
		}
		s := up.get(t, id)
		for _, c := range []struct{ name, want string }{
			{"X-Forwarded-For", "127.0.0.1"},
			{"X-Forwarded-Host", "shop.example"},
			{"X-Forwarded-Proto", "http"},
		} {
			if got := s.header.Values(c.name); len(got) != 1 || got[0] != c.want {
				t.Errorf("Connection %q: backend saw %s %q; want only %q", conn, c.name, got, c.want)
			}
		}
		for _, h := range []string{"Forwarded", "X-Real-Ip"} {
			if got := s.header.Values(h); len(got) != 0 {
				t.Errorf("Connection %q: backend saw the client's %s %q", conn, h, got)
			}
		}
		if want := hostPortOf(up.url); s.host != want {
			t.Errorf("backend saw Host %q; want its own %q", s.host, want)
		}
	}
}

// rawRequest writes a request to g over a new connection and reads the
// answer.
func rawRequest(t *testing.T, g *gateway, request string) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", g.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestConnectionHeaderEmptyFirstLine: a Connection header whose first line
// is empty still cannot remove the balancer's headers (golang/go#46313).
func TestConnectionHeaderEmptyFirstLine(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, "a", nil)
	pool, _ := poolOf(t, up.url)
	g := startGateway(t, pool, lb.RoundRobin())
	resp := rawRequest(t, g, "GET /x HTTP/1.1\r\nHost: shop.example\r\nConnection: \r\n"+
		"Connection: X-Forwarded-For, X-Forwarded-Host, X-Hop\r\nX-Hop: 1\r\n"+reqIDHeader+": raw\r\n\r\n")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	s := up.get(t, "raw")
	if got := s.header.Values("X-Forwarded-For"); len(got) != 1 || got[0] != "127.0.0.1" {
		t.Errorf("X-Forwarded-For %q; want only 127.0.0.1", got)
	}
	if got := s.header.Get("X-Forwarded-Host"); got != "shop.example" {
		t.Errorf("X-Forwarded-Host %q; want shop.example", got)
	}
	if got := s.header.Values("X-Hop"); len(got) != 0 {
		t.Errorf("X-Hop %q crossed the balancer", got)
	}
}

// TestHopByHopHeadersStripped: hop-by-hop headers, and those named in
// Connection, cross the balancer in neither direction; TE: trailers does.
func TestHopByHopHeadersStripped(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, "a", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Connection", "X-Resp-Hop")
		h.Set("X-Resp-Hop", "1")
		h.Set("Keep-Alive", "timeout=5")
		h.Set("Proxy-Connection", "keep-alive")
		h.Set("Upgrade", "foo")
		h.Set("X-End-To-End", "kept")
		io.WriteString(w, "ok")
	})
	pool, _ := poolOf(t, up.url)
	g := startGateway(t, pool, lb.RoundRobin())

	respHop := []string{"Connection", "X-Resp-Hop", "Keep-Alive", "Proxy-Connection", "Upgrade"}
	// The backend really sends them.
	direct, err := g.c.Get(up.url)
	if err != nil {
		t.Fatal(err)
	}
	direct.Body.Close()
	for _, h := range respHop {
		if direct.Header.Get(h) == "" {
			t.Fatalf("the backend does not send %s; the test proves nothing", h)
		}
	}

	req, _ := http.NewRequest(http.MethodGet, g.url+"/", nil)
	req.Header.Set(reqIDHeader, "hop")
	req.Header.Set("Connection", "keep-alive, X-Hop-A, x-hop-b")
	req.Header.Set("X-Hop-A", "1")
	req.Header.Set("X-Hop-B", "2")
	req.Header.Set("Keep-Alive", "timeout=5")
	req.Header.Set("Proxy-Connection", "keep-alive")
	req.Header.Set("Te", "trailers, deflate")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("X-End-To-End", "kept")
	r := g.send(t, req)
	if r.status != http.StatusOK {
		t.Fatalf("status %d", r.status)
	}
	s := up.get(t, "hop")
	for _, h := range []string{"Connection", "X-Hop-A", "X-Hop-B", "Keep-Alive", "Proxy-Connection", "Upgrade"} {
		if v := s.header.Values(h); len(v) != 0 {
			t.Errorf("request header %s: %q crossed the balancer", h, v)
		}
	}
	if got := s.header.Values("Te"); len(got) != 1 || got[0] != "trailers" {
		t.Errorf("backend saw TE %q; want only trailers", got)
	}
	if got := s.header.Get("X-End-To-End"); got != "kept" {
		t.Errorf("end-to-end request header lost: %q", got)
	}
	for _, h := range respHop {
		if v := r.header.Values(h); len(v) != 0 {
			t.Errorf("response header %s: %q crossed the balancer", h, v)
		}
	}
	if got := r.header.Get("X-End-To-End"); got != "kept" {
		t.Errorf("end-to-end response header lost: %q", got)
	}
}

// TestPathJoining: the backend URL's path is joined in front of the
// request's, escapes are kept as sent, queries are merged; a retry joins
// the original path to the next backend's, not to the first one's.
func TestPathJoining(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, "a", nil)
	for _, tc := range []struct {
		base, path, want string
	}{
		{"/base", "/x?y=1", "/base/x?y=1"},
		{"/base/", "/x", "/base/x"},
		{"/base", "/", "/base/"},
		{"", "/a%2Fb", "/a%2Fb"},
		{"/base", "/a%2Fb?q=%2F", "/base/a%2Fb?q=%2F"},
		{"/b%2Fse", "/x", "/b%2Fse/x"},
		{"/base?k=v", "/x?y=1", "/base/x?k=v&y=1"},
		{"/base", "//x", "/base//x"},
	} {
		t.Run(tc.base+" "+tc.path, func(t *testing.T) {
			t.Parallel()
			pool, _ := poolOf(t, up.url+tc.base)
			g := startGateway(t, pool, lb.RoundRobin())
			id := "path " + tc.base + " " + tc.path
			r := g.mustDo(t, http.MethodGet, tc.path, id, nil, nil)
			if r.status != http.StatusOK {
				t.Fatalf("status %d", r.status)
			}
			if got := up.get(t, id).uri; got != tc.want {
				t.Errorf("backend %s, request %s: backend saw %q; want %q", tc.base, tc.path, got, tc.want)
			}
		})
	}

	t.Run("behind StripPrefix", func(t *testing.T) {
		t.Parallel()
		pool, _ := poolOf(t, up.url+"/base")
		bal := lb.New(pool, lb.RoundRobin())
		mux := http.NewServeMux()
		mux.Handle("/api/", http.StripPrefix("/api", bal))
		g := serveGateway(t, bal, mux)
		r := g.mustDo(t, http.MethodGet, "/api/x%2Fy?z=1", "strip", nil, nil)
		if r.status != http.StatusOK {
			t.Fatalf("status %d", r.status)
		}
		if got := up.get(t, "strip").uri; got != "/base/x%2Fy?z=1" {
			t.Errorf("backend saw %q; want /base/x%%2Fy?z=1", got)
		}
	})

	t.Run("retry", func(t *testing.T) {
		t.Parallel()
		pool, _ := poolOf(t, refusingURL(t)+"/dead?d=1", up.url+"/base")
		g := startGateway(t, pool, lb.RoundRobin())
		r := g.mustDo(t, http.MethodGet, "/x%2Fy?y=1", "retried path", nil, nil)
		if r.status != http.StatusOK {
			t.Fatalf("status %d", r.status)
		}
		if got := up.get(t, "retried path").uri; got != "/base/x%2Fy?y=1" {
			t.Errorf("retried request: backend saw %q; want /base/x%%2Fy?y=1", got)
		}
	})
}

// TestErrorAnswersHideBackends: no error answer names a backend address.
func TestErrorAnswersHideBackends(t *testing.T) {
	t.Parallel()
	bad := startUpstream(t, "bad", hangup)
	dead := refusingURL(t)
	pool, _ := poolOf(t, bad.url, dead)
	g := startGateway(t, pool, lb.RoundRobin(), lb.WithPassiveHealth(health.Passive{MaxFails: -1}))
	for i := range 4 {
		r := g.mustDo(t, http.MethodGet, "/", strconv.Itoa(i), nil, nil)
		if r.status != http.StatusBadGateway {
			t.Errorf("status %d; want 502", r.status)
		}
		all := fmt.Sprint(r.header) + string(r.body)
		for _, h := range []string{hostPortOf(bad.url), hostPortOf(dead), "refused", "EOF"} {
			if strings.Contains(all, h) {
				t.Errorf("error answer %q reveals %q", all, h)
			}
		}
	}
}

// TestConsistentHashRetryKeepsKey: when a key's backend fails, the retry
// is chosen by the key of the request as the client sent it, so it lands
// on the next backend along the ring (where the key goes when that backend
// is not in the pool), not wherever the first attempt's rewritten URL or
// Host hashes.
func TestConsistentHashRetryKeepsKey(t *testing.T) {
	t.Parallel()
	ups := []*upstream{startUpstream(t, "a", nil), startUpstream(t, "b", nil), startUpstream(t, "c", nil)}
	dead := refusingURL(t) + "/dead"
	hostKey := lb.KeyFunc(func(r *http.Request) string { return r.Host })
	for _, tc := range []struct {
		name string
		key  lb.KeyFunc
		req  func(v string) *http.Request
	}{
		{"PathKey", lb.PathKey(), func(v string) *http.Request {
			r, _ := http.NewRequest(http.MethodGet, "/"+v, nil)
			return r
		}},
		{"QueryKey", lb.QueryKey("u"), func(v string) *http.Request {
			r, _ := http.NewRequest(http.MethodGet, "/?u="+v, nil)
			return r
		}},
		{"Host", hostKey, func(v string) *http.Request {
			r, _ := http.NewRequest(http.MethodGet, "/", nil)
			r.Host = v + ".example"
			return r
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			withDead, _ := poolOf(t, append(urlsOf(ups...), dead+"?d=1")...)
			without, _ := poolOf(t, urlsOf(ups...)...)
			g1 := startGateway(t, withDead, lb.ConsistentHash(tc.key))
			g2 := startGateway(t, without, lb.ConsistentHash(tc.key))
			differ := 0
			for i := range 120 {
				v := fmt.Sprintf("k%03d", i)
				var got [2]string
				for j, g := range []*gateway{g1, g2} {
					r := tc.req(v)
					r.URL.Scheme, r.URL.Host = "http", g.srv.Listener.Addr().String()
					out := g.send(t, r)
					if out.status != http.StatusOK {
						t.Fatalf("status %d", out.status)
					}
					got[j], _, _ = strings.Cut(string(out.body), "|")
				}
				if got[0] != got[1] {
					differ++
					if differ <= 3 {
						t.Errorf("key %s: retried to %s after the dead backend; without it, the ring sends it to %s", v, got[0], got[1])
					}
				}
			}
			if differ > 0 {
				t.Errorf("%d of 120 keys went elsewhere than the next backend on the ring", differ)
			}
		})
	}
}

// TestRetryTimeout: no new attempt starts once RetryPolicy.Timeout has
// passed since the first began.
func TestRetryTimeout(t *testing.T) {
	t.Parallel()
	slowHangup := func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(150 * time.Millisecond)
		hangup(w, r)
	}
	for _, tc := range []struct {
		timeout time.Duration
		want    int
	}{
		{100 * time.Millisecond, 1},
		{time.Minute, 3},
	} {
		t.Run(tc.timeout.String(), func(t *testing.T) {
			t.Parallel()
			var ups []*upstream
			for i := range 3 {
				ups = append(ups, startUpstream(t, fmt.Sprint("s", i), slowHangup))
			}
			pool, _ := poolOf(t, urlsOf(ups...)...)
			g := startGateway(t, pool, lb.RoundRobin(), lb.WithRetry(lb.RetryPolicy{Timeout: tc.timeout}))
			if r := g.mustDo(t, http.MethodGet, "/", "t", nil, nil); r.status != http.StatusBadGateway {
				t.Errorf("status %d; want 502", r.status)
			}
			n := 0
			for _, u := range ups {
				n += u.hits("t")
			}
			if n != tc.want {
				t.Errorf("Timeout %v: %d attempts of 150ms each; want %d", tc.timeout, n, tc.want)
			}
		})
	}
}

// TestDefaultTransportReusesConnections: the default transport keeps
// enough idle connections per backend that concurrent clients do not make
// it dial anew for every request (Go's default keeps 2).
func TestDefaultTransportReusesConnections(t *testing.T) {
	t.Parallel()
	var dials atomic.Int64
	up := startUpstream(t, "a", nil, func(s *http.Server) {
		s.ConnState = func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				dials.Add(1)
			}
		}
	})
	pool, _ := poolOf(t, up.url)
	g := startGateway(t, pool, lb.RoundRobin())
	const clients = 16
	counts := spread(t, g, clients, 25, nil)
	if counts["a"] != clients*25 {
		t.Fatalf("served %v", counts)
	}
	if n := dials.Load(); n > 2*clients {
		t.Errorf("%d connections to the backend for %d requests from %d clients; want at most %d",
			n, clients*25, clients, 2*clients)
	}
}

// TestBackendDiesMidResponse: a backend that dies after sending part of
// its body gives the client an error after the bytes it sent, never a
// complete-looking answer; the request is not retried (reliability.md F2).
func TestBackendDiesMidResponse(t *testing.T) {
	t.Parallel()
	sent := pseudoRandom(40000, 23)
	dying := startUpstream(t, "dying", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100000")
		w.Write(sent)
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	})
	other := startUpstream(t, "other", nil)
	pool, bes := poolOf(t, dying.url, other.url)
	g := startGateway(t, pool, lb.RoundRobin())
	req, _ := http.NewRequest(http.MethodGet, g.url+"/", nil)
	req.Header.Set(reqIDHeader, "f2")
	resp, err := g.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Errorf("read %d bytes of a body cut short with no error", len(got))
	}
	if len(got) > len(sent) || string(got) != string(sent[:len(got)]) {
		t.Errorf("client got %d bytes that are not a prefix of the %d sent", len(got), len(sent))
	} else if len(got) != len(sent) {
		t.Errorf("client got %d of the %d bytes the backend sent before dying; want all of them", len(got), len(sent))
	}
	if n := other.hits("f2"); n != 0 {
		t.Errorf("a request whose answer had started was retried (%d times)", n)
	}
	for _, be := range bes {
		eventually(t, "in-flight counts back to 0", func() bool { return be.Active() == 0 })
	}
}

// TestInFlightCountsSettle: every kind of answer, including one the
// client stops reading, leaves the in-flight counts at 0, and a client
// that goes away mid-answer does not count against the backend.
func TestInFlightCountsSettle(t *testing.T) {
	t.Parallel()
	big := pseudoRandom(4<<20, 29)
	h := func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.WriteHeader(http.StatusNotModified)
		case "/big":
			w.Write(big)
		default:
			io.WriteString(w, "ok")
		}
	}
	a, b := startUpstream(t, "a", h), startUpstream(t, "b", h)
	pool, bes := poolOf(t, a.url, b.url)
	g := startGateway(t, pool, lb.LeastConn(),
		lb.WithPassiveHealth(&health.Passive{MaxFails: 1, FailTimeout: time.Minute}))
	for _, c := range []struct{ method, path string }{
		{http.MethodHead, "/"}, {http.MethodGet, "/204"}, {http.MethodGet, "/304"}, {http.MethodOptions, "/"},
	} {
		for range 2 { // once on each backend
			if r := g.mustDo(t, c.method, c.path, "", nil, nil); r.status >= 400 {
				t.Errorf("%s %s: status %d", c.method, c.path, r.status)
			}
		}
		for _, be := range bes {
			eventually(t, c.method+" "+c.path+" settled", func() bool { return be.Active() == 0 })
		}
	}
	// The client reads a little of a big answer and hangs up.
	for range 3 {
		resp, err := g.c.Get(g.url + "/big")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(resp.Body, make([]byte, 1024)); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		g.c.CloseIdleConnections()
	}
	for _, be := range bes {
		eventually(t, "aborted answers settled", func() bool { return be.Active() == 0 })
		if !be.Alive() {
			t.Errorf("%s taken out after clients hung up mid-answer", be)
		}
	}
}

// TestClientAbortsUpload: a client that hangs up in the middle of sending
// its request body is not a backend failure and is not retried.
func TestClientAbortsUpload(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{}, 1)
	gone := make(chan error, 1)
	var calls atomic.Int64
	up := startUpstream(t, "a", nil)
	// The recorder of startUpstream reads the body before the handler
	// runs; this backend must report the request as soon as it arrives.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		arrived <- struct{}{}
		_, err := io.Copy(io.Discard, r.Body)
		gone <- err
	}))
	t.Cleanup(srv.Close)
	pool, bes := poolOf(t, srv.URL, up.url)
	// Streamed, not read ahead: the backend must see the upload begin
	// (TestBufferedUploadAbort is the buffered case).
	g := startGateway(t, pool, lb.RoundRobin(),
		lb.WithPassiveHealth(&health.Passive{MaxFails: 1, FailTimeout: time.Minute}),
		lb.WithRequestBuffering(lb.RequestBuffering{Max: -1}))

	conn, err := net.Dial("tcp", g.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /upload HTTP/1.1\r\nHost: x\r\n%s: abort\r\nContent-Length: 100000\r\n\r\n", reqIDHeader)
	conn.Write(pseudoRandom(10000, 31))
	await(t, arrived, "the upload to reach the backend")
	conn.Close()
	if err := await(t, gone, "the backend to see the upload end"); err == nil {
		t.Error("backend read the cut-short body without an error")
	}
	for _, be := range bes {
		eventually(t, "in-flight counts back to 0", func() bool { return be.Active() == 0 })
	}
	if up.hits("abort") != 0 {
		t.Error("the aborted upload was sent to another backend")
	}
	if !bes[0].Alive() {
		t.Error("a client hanging up mid-upload took the backend out (MaxFails 1)")
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("backend got the upload %d times; want 1", n)
	}
}

// TestOnlyPoolMembersAreDialed: whatever the request line, Host or path
// say, the balancer dials only its backends (reliability.md S4). The
// transport refuses, without dialing, any other address.
func TestOnlyPoolMembersAreDialed(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, "a", nil)
	allowed := hostPortOf(up.url)
	var (
		mu     sync.Mutex
		dialed []string
	)
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dialed = append(dialed, addr)
		mu.Unlock()
		if addr != allowed {
			return nil, fmt.Errorf("test refuses to dial %s", addr)
		}
		return d.DialContext(ctx, network, addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	pool, _ := poolOf(t, up.url+"/base")
	g := startGateway(t, pool, lb.RoundRobin(), lb.WithTransport(tr))
	for i, req := range []string{
		"GET http://169.254.169.254/latest/meta-data HTTP/1.1\r\nHost: 169.254.169.254\r\n",
		"GET //169.254.169.254/x HTTP/1.1\r\nHost: 169.254.169.254\r\n",
		"GET /x HTTP/1.1\r\nHost: 10.0.0.1:22\r\n",
		"GET /x@169.254.169.254/ HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Host: 169.254.169.254\r\n",
	} {
		id := fmt.Sprint("ssrf", i)
		resp := rawRequest(t, g, req+reqIDHeader+": "+id+"\r\nConnection: close\r\n\r\n")
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%q: status %d; want 200 from the pool's backend", req, resp.StatusCode)
			continue
		}
		s := up.get(t, id)
		if s.host != allowed || !strings.HasPrefix(s.uri, "/base/") {
			t.Errorf("%q: backend saw Host %q, URI %q; want Host %s and a URI under /base/", req, s.host, s.uri, allowed)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, a := range dialed {
		if a != allowed {
			t.Errorf("balancer dialed %s, not a pool member", a)
		}
	}
}
