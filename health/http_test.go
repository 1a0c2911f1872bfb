package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// serve starts an httptest server for h and returns its URL.
func serve(t *testing.T, h http.HandlerFunc) *url.URL {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return mustParse(t, srv.URL)
}

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// statusHandler answers with the status in the "status" query parameter
// and the body in "body".
func statusHandler(w http.ResponseWriter, r *http.Request) {
	code, _ := strconv.Atoi(r.URL.Query().Get("status"))
	if code == 0 {
		code = http.StatusOK
	}
	if code >= 300 && code < 400 {
		w.Header().Set("Location", "/elsewhere")
	}
	w.WriteHeader(code)
	io.WriteString(w, r.URL.Query().Get("body"))
}

func TestHTTPCheckStatus(t *testing.T) {
	target := serve(t, statusHandler)
	tests := []struct {
		min, max int // StatusMin, StatusMax
		status   int
		want     string // the error; "" for none
	}{
		{0, 0, 200, ""},
		{0, 0, 204, ""},
		{0, 0, 301, ""},
		{0, 0, 399, ""},
		{0, 0, 400, "health: GET %s/s?status=400: status 400 outside 200-399"},
		{0, 0, 404, "health: GET %s/s?status=404: status 404 outside 200-399"},
		{0, 0, 503, "health: GET %s/s?status=503: status 503 outside 200-399"},
		{300, 0, 200, "health: GET %s/s?status=200: status 200 outside 300-399"},
		{0, 299, 302, "health: GET %s/s?status=302: status 302 outside 200-299"},
		{0, 499, 404, ""},
		{503, 503, 503, ""},
		{204, 204, 200, "health: GET %s/s?status=200: status 200 outside 204-204"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d-%d/%d", tt.min, tt.max, tt.status), func(t *testing.T) {
			c := &HTTPCheck{Path: fmt.Sprintf("/s?status=%d", tt.status), StatusMin: tt.min, StatusMax: tt.max}
			err := c.Check(context.Background(), target)
			want := tt.want
			if want != "" {
				want = fmt.Sprintf(want, target)
			}
			if got := fmt.Sprint(err); (err == nil) != (want == "") || (err != nil && got != want) {
				t.Errorf("Check() = %v; want %q", err, want)
			}
		})
	}
}

func TestHTTPCheckBody(t *testing.T) {
	target := serve(t, func(w http.ResponseWriter, r *http.Request) {
		// The body comes in pieces, so that "world" spans two reads.
		for _, s := range []string{"hello ", "wor", "ld", "!"} {
			io.WriteString(w, s)
			w.(http.Flusher).Flush()
			time.Sleep(time.Millisecond)
		}
	})
	tests := []struct {
		body    string
		maxBody int64
		want    string // a substring of the error; "" for none
	}{
		{"world", 0, ""},
		{"hello world!", 0, ""},
		{"hello world!", 12, ""},
		{"hello world!", 11, `does not contain "hello world!" in its first 11 bytes`},
		{"world", 10, `does not contain "world" in its first 10 bytes`},
		{"World", 0, `does not contain "World" in its first 65536 bytes`},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.body, tt.maxBody), func(t *testing.T) {
			c := &HTTPCheck{Body: tt.body, MaxBody: tt.maxBody}
			err := c.Check(context.Background(), target)
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Check() = %v; want %q", err, tt.want)
			}
		})
	}
}

func TestContains(t *testing.T) {
	body := strings.Repeat("ab", 10000) + "needle" + strings.Repeat("cd", 10000)
	at := int64(strings.Index(body, "needle"))
	for _, chunk := range []int{1, 3, 7, 4096, 100000} {
		for _, tt := range []struct {
			limit int64
			want  bool
		}{{at + 6, true}, {at + 5, false}, {int64(len(body)) * 2, true}, {5, false}} {
			r := &countingReader{r: &chunkReader{s: body, n: chunk}}
			got, err := contains(r, []byte("needle"), tt.limit)
			if err != nil || got != tt.want {
				t.Errorf("chunks of %d, limit %d: contains = %v, %v; want %v", chunk, tt.limit, got, err, tt.want)
			}
			if r.n > tt.limit || (tt.want && r.n > at+6+int64(chunk)) {
				t.Errorf("chunks of %d, limit %d: read %d bytes", chunk, tt.limit, r.n)
			}
		}
	}
}

// chunkReader reads s at most n bytes at a time.
type chunkReader struct {
	s string
	n int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.n)], r.s)
	r.s = r.s[n:]
	return n, nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.n += int64(n)
	return n, err
}

func TestHTTPCheckRequest(t *testing.T) {
	type request struct {
		method, uri, host, header, auth string
	}
	got := make(chan request, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- request{r.Method, r.RequestURI, r.Host, r.Header.Get("X-Check"), r.Header.Get("Authorization")}
	}))
	defer srv.Close()
	host := srv.Listener.Addr().String()

	tests := []struct {
		name   string
		check  *HTTPCheck
		target string
		want   request
	}{
		{"defaults", &HTTPCheck{}, "http://" + host, request{"GET", "/healthz", host, "", ""}},
		{"target path joined", &HTTPCheck{Path: "/status"}, "http://" + host + "/api/", request{"GET", "/api/status", host, "", ""}},
		{"target path without slash", &HTTPCheck{}, "http://" + host + "/api", request{"GET", "/api/healthz", host, "", ""}},
		{"escaped path and query", &HTTPCheck{Path: "/s%20t?full=1"}, "http://" + host + "/a%2Fb", request{"GET", "/a%2Fb/s%20t?full=1", host, "", ""}},
		{"no scheme", &HTTPCheck{}, "//" + host, request{"GET", "/healthz", host, "", ""}},
		{"method, host, header", &HTTPCheck{Method: "HEAD", Host: "svc.internal", Header: http.Header{"X-Check": {"1"}}},
			"http://" + host, request{"HEAD", "/healthz", "svc.internal", "1", ""}},
		{"host from Header", &HTTPCheck{Header: http.Header{"Host": {"other.internal"}}}, "http://" + host,
			request{"GET", "/healthz", "other.internal", "", ""}},
		{"user info", &HTTPCheck{}, "http://u:p@" + host, request{"GET", "/healthz", host, "", "Basic dTpw"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.check.Check(context.Background(), mustParse(t, tt.target)); err != nil {
				t.Fatalf("Check() = %v", err)
			}
			if r := <-got; r != tt.want {
				t.Errorf("server got %+v; want %+v", r, tt.want)
			}
		})
	}
}

func TestHTTPCheckRedirectNotFollowed(t *testing.T) {
	var other atomic.Int32
	elsewhere := serve(t, func(w http.ResponseWriter, r *http.Request) { other.Add(1) })
	target := serve(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.String()+"/healthz", http.StatusFound)
	})

	if err := (&HTTPCheck{}).Check(context.Background(), target); err != nil {
		t.Errorf("Check() = %v; want a pass for 302", err)
	}
	err := (&HTTPCheck{StatusMax: 299}).Check(context.Background(), target)
	if err == nil || !strings.Contains(err.Error(), "status 302 outside 200-299") {
		t.Errorf("Check() with StatusMax 299 = %v; want status 302 outside 200-299", err)
	}
	if n := other.Load(); n != 0 {
		t.Errorf("the redirect target got %d requests; want 0", n)
	}
}

// countingTransport counts the response body bytes read through it.
type countingTransport struct {
	rt http.RoundTripper
	n  atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(r)
	if err == nil {
		resp.Body = &countingBody{resp.Body, &c.n}
	}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// endless writes chunks of s until the client goes away, pausing pause
// after each.
func endless(s string, pause time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(s)
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(pause)
		}
	}
}

func TestHTTPCheckEndlessBody(t *testing.T) {
	fast := serve(t, endless(strings.Repeat("x", 32<<10), 0))
	needle := serve(t, endless("needle"+strings.Repeat("x", 32<<10), 0))
	trickle := serve(t, endless("x", 10*time.Millisecond))

	tests := []struct {
		name     string
		target   *url.URL
		body     string        // Body
		maxBody  int64         // MaxBody
		interval time.Duration // Interval, and so Timeout
		want     string        // a substring of the error; "" for none
		wantMax  int64         // most bytes read
	}{
		{"limited by MaxBody", fast, "needle", 100000, 0,
			`does not contain "needle" in its first 100000 bytes`, 100000},
		{"limited by default MaxBody", fast, "needle", 0, 0,
			`does not contain "needle" in its first 65536 bytes`, 64 << 10},
		{"stops reading once found", needle, "needle", 0, 0, "", 32<<10 + 6},
		{"limited by Timeout", trickle, "needle", 0, 200 * time.Millisecond,
			"reading body: context deadline exceeded", 100},
		{"body not read without Body", fast, "", 0, 0, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Once with a counting transport, once with the private one.
			counting := &countingTransport{rt: &http.Transport{DisableKeepAlives: true}}
			for _, rt := range []http.RoundTripper{counting, nil} {
				c := &HTTPCheck{Body: tt.body, MaxBody: tt.maxBody, Interval: tt.interval, Transport: rt}
				start := time.Now()
				err := c.Check(context.Background(), tt.target)
				if elapsed := time.Since(start); elapsed > 2*time.Second {
					t.Errorf("Check took %v", elapsed)
				}
				if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
					t.Errorf("Check() = %v; want %q", err, tt.want)
				}
			}
			if n := counting.n.Load(); n > tt.wantMax {
				t.Errorf("read %d body bytes; want at most %d", n, tt.wantMax)
			}
		})
	}
}

func TestHTTPCheckTimeout(t *testing.T) {
	release := make(chan struct{})
	target := serve(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)

	c := &HTTPCheck{Timeout: 100 * time.Millisecond}
	start := time.Now()
	err := c.Check(context.Background(), target)
	elapsed := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "health: GET ") {
		t.Errorf("Check() = %v; want a health: GET error wrapping context.DeadlineExceeded", err)
	}
	if elapsed < 100*time.Millisecond || elapsed > time.Second {
		t.Errorf("Check returned after %v; want about 100ms", elapsed)
	}

	// A ctx that ends before Timeout ends the check.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start = time.Now()
	err = (&HTTPCheck{Timeout: 5 * time.Second}).Check(ctx, target)
	if elapsed := time.Since(start); !errors.Is(err, context.Canceled) || elapsed > 2*time.Second {
		t.Errorf("Check(ctx canceled after 50ms) = %v after %v; want context.Canceled after about 50ms", err, elapsed)
	}
}

func TestHTTPCheckConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	err = (&HTTPCheck{}).Check(context.Background(), mustParse(t, "http://"+addr))
	var opErr *net.OpError
	if !errors.As(err, &opErr) || !strings.HasPrefix(err.Error(), "health: GET http://"+addr+"/healthz: ") {
		t.Errorf("Check() = %v; want a health: GET error wrapping a *net.OpError", err)
	}
}

func TestHTTPCheckTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(statusHandler))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake that fails
	srv.StartTLS()
	defer srv.Close()
	target := mustParse(t, srv.URL)

	if err := (&HTTPCheck{Transport: srv.Client().Transport}).Check(context.Background(), target); err != nil {
		t.Errorf("Check() with the server's transport = %v", err)
	}
	// The private transport verifies certificates.
	if err := (&HTTPCheck{}).Check(context.Background(), target); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Check() with the private transport = %v; want a certificate error", err)
	}
}

func TestHTTPCheckConnections(t *testing.T) {
	var mu sync.Mutex
	states := map[net.Conn]http.ConnState{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(statusHandler))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		states[c] = s
	}
	srv.Start()
	defer srv.Close()

	c := &HTTPCheck{}
	const n = 5
	for range n {
		if err := c.Check(context.Background(), mustParse(t, srv.URL)); err != nil {
			t.Fatal(err)
		}
	}
	// Each check used a connection of its own and closed it.
	deadline := time.Now().Add(2 * time.Second)
	for {
		mu.Lock()
		closed := 0
		for _, s := range states {
			if s == http.StateClosed {
				closed++
			}
		}
		total := len(states)
		mu.Unlock()
		if total == n && closed == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d checks: %d connections, %d closed; want %d, all closed", n, total, closed, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHTTPCheckConcurrent(t *testing.T) {
	up := serve(t, statusHandler)
	down := serve(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	body := serve(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "status: ok") })

	c := &HTTPCheck{Path: "/", Body: "ok", Timeout: time.Second}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := range 10 {
				target, wantPass := body, true
				switch (i + j) % 3 {
				case 0:
					target, wantPass = up, false // no "ok" in its empty body
				case 1:
					target, wantPass = down, false
				}
				if err := c.Check(context.Background(), target); (err == nil) != wantPass {
					t.Errorf("Check(%s) = %v; want pass %v", target, err, wantPass)
				}
			}
		})
	}
	wg.Wait()
}

func TestHTTPCheckInvalid(t *testing.T) {
	var hits atomic.Int32
	target := serve(t, func(w http.ResponseWriter, r *http.Request) { hits.Add(1) })
	err := (&HTTPCheck{Path: "healthz"}).Check(context.Background(), target)
	if err == nil || !strings.Contains(err.Error(), "Path") || hits.Load() != 0 {
		t.Errorf("Check() with a bad Path = %v after %d requests; want the Validate error, no request", err, hits.Load())
	}
}

func TestHTTPCheckValidate(t *testing.T) {
	tests := []struct {
		c    *HTTPCheck
		want string // a substring of the error; "" for none
	}{
		{&HTTPCheck{}, ""},
		{&HTTPCheck{Path: "/x?y=1", Method: "OPTIONS", StatusMin: 200, StatusMax: 200, MaxBody: 1, Body: "ok"}, ""},
		{&HTTPCheck{StatusMin: 300}, ""},
		{&HTTPCheck{Path: "healthz"}, "Path"},
		{&HTTPCheck{Method: "GET /"}, "Method"},
		{&HTTPCheck{StatusMin: 400}, "StatusMin 400 above StatusMax 399"},
		{&HTTPCheck{StatusMin: 300, StatusMax: 299}, "StatusMin 300 above StatusMax 299"},
		{&HTTPCheck{StatusMin: -1}, "StatusMin"},
		{&HTTPCheck{StatusMax: 1000}, "StatusMax"},
		{&HTTPCheck{MaxBody: -1}, "MaxBody"},
		{&HTTPCheck{Method: "HEAD", Body: "ok"}, "HEAD"},
		{&HTTPCheck{Interval: -time.Second}, "Interval"},
		{&HTTPCheck{Interval: time.Second, Timeout: 2 * time.Second}, "Timeout"},
		{&HTTPCheck{Jitter: 1}, "Jitter"},
		{&HTTPCheck{Host: "app.internal:8080", Header: http.Header{"User-Agent": {"tinylb"}, "x-lower": {""}}}, ""},
		{&HTTPCheck{Host: "a b"}, "Host"},
		{&HTTPCheck{Host: "a/b"}, "Host"},
		{&HTTPCheck{Header: http.Header{"Bad Name": {"x"}}}, `Header name "Bad Name"`},
		{&HTTPCheck{Header: http.Header{"X-A": {"ok"}, "X-B": {"ok", "a\r\nInjected: 1"}}}, `Header "X-B"`},
		{&HTTPCheck{Header: http.Header{"X-Nul": {"a\x00"}}}, "CR, LF or NUL"},
	}
	for _, tt := range tests {
		err := tt.c.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("Validate() = %v; want nil", err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "health: ")):
			t.Errorf("Validate() = %v; want an error naming %s", err, tt.want)
		}
	}
}

func TestCheckSchedules(t *testing.T) {
	want := Schedule{Interval: time.Minute, Timeout: time.Second, Rise: 4, Fall: 5, Jitter: 0.25, StartDown: true}
	h := &HTTPCheck{Interval: time.Minute, Timeout: time.Second, Rise: 4, Fall: 5, Jitter: 0.25, StartDown: true}
	if got := h.Schedule(); got != want {
		t.Errorf("HTTPCheck.Schedule() = %+v; want %+v", got, want)
	}
	c := TCPCheck{Interval: time.Minute, Timeout: time.Second, Rise: 4, Fall: 5, Jitter: 0.25, StartDown: true}
	if got := c.Schedule(); got != want {
		t.Errorf("TCPCheck.Schedule() = %+v; want %+v", got, want)
	}
}

// BenchmarkContains measures the body search over a 64 KiB body.
func BenchmarkContains(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 64<<10)
	want := []byte("needle")
	b.ReportAllocs()
	for b.Loop() {
		contains(bytes.NewReader(body), want, int64(len(body)))
	}
}
