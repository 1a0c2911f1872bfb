package health

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// serveH2C starts an httptest server for h that speaks only HTTP/2 with
// prior knowledge, unencrypted, as a plaintext gRPC server does, and
// returns its URL. configure, if given, changes the server before it
// starts. The test's cleanup closes it and the idle connections of the
// default gRPC check transports.
func serveH2C(t *testing.T, h http.Handler, configure ...func(*http.Server)) *url.URL {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	for _, f := range configure {
		f(srv.Config)
	}
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		closeGRPCTransports()
	})
	return mustParse(t, srv.URL)
}

// closeGRPCTransports closes the idle connections of every default gRPC
// check transport, so that no connection outlives its test.
func closeGRPCTransports() {
	grpcTransports.mu.Lock()
	defer grpcTransports.mu.Unlock()
	for _, tr := range grpcTransports.m {
		tr.CloseIdleConnections()
	}
}

// grpcAnswer is what a hand-written gRPC server answers a call with.
type grpcAnswer struct {
	status       int    // HTTP status; 0 means 200
	contentType  string // "" means application/grpc
	body         []byte // the response body, frames and all
	grpcStatus   string // the grpc-status trailer; "" for none
	grpcMessage  string // the grpc-message trailer; "" for none
	trailersOnly bool   // grpc-status and grpc-message in the headers, and no body
}

func (a grpcAnswer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	status, ct := a.status, a.contentType
	if status == 0 {
		status = http.StatusOK
	}
	if ct == "" {
		ct = "application/grpc"
	}
	h := w.Header()
	h.Set("Content-Type", ct)
	if a.trailersOnly {
		h.Set("Grpc-Status", a.grpcStatus)
		if a.grpcMessage != "" {
			h.Set("Grpc-Message", a.grpcMessage)
		}
		w.WriteHeader(status)
		return
	}
	w.WriteHeader(status)
	w.Write(a.body)
	if a.grpcStatus != "" {
		h.Set(http.TrailerPrefix+"Grpc-Status", a.grpcStatus)
	}
	if a.grpcMessage != "" {
		h.Set(http.TrailerPrefix+"Grpc-Message", a.grpcMessage)
	}
}

// answerWith returns a handler that answers with answers[the X-Case
// header of the request].
func answerWith(answers map[string]grpcAnswer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a, ok := answers[r.Header.Get("X-Case")]
		if !ok {
			http.Error(w, "no such case", http.StatusTeapot)
			return
		}
		a.ServeHTTP(w, r)
	}
}

// answer answers a message with status st and grpc-status OK.
func answer(st servingStatus) grpcAnswer {
	return grpcAnswer{body: frame(0, []byte{1 << 3, byte(st)}), grpcStatus: "0"}
}

func TestGRPCCheckAnswers(t *testing.T) {
	serving := frame(0, []byte{8, 1})
	tests := []struct {
		name   string
		answer grpcAnswer
		want   string // the error after its "health: grpc URL service \"\": "; "" for none
	}{
		{"SERVING", answer(statusServing), ""},
		{"NOT_SERVING", answer(statusNotServing), "serving status NOT_SERVING"},
		{"SERVICE_UNKNOWN", answer(statusServiceUnknown), "serving status SERVICE_UNKNOWN"},
		{"UNKNOWN", grpcAnswer{body: frame(0, nil), grpcStatus: "0"}, "serving status UNKNOWN"},
		{"status without a name", answer(9), "serving status ServingStatus(9)"},
		{"unknown fields", grpcAnswer{body: frame(0, []byte{2 << 3, 5, 8, 1, 3<<3 | 2, 1, 'x'}), grpcStatus: "0"}, ""},
		{"application/grpc+proto", grpcAnswer{contentType: "application/grpc+proto", body: serving, grpcStatus: "0"}, ""},
		{"NOT_FOUND", grpcAnswer{trailersOnly: true, grpcStatus: "5", grpcMessage: "unknown service"}, `grpc-status NOT_FOUND (5): "unknown service"`},
		{"UNIMPLEMENTED", grpcAnswer{trailersOnly: true, grpcStatus: "12"}, "grpc-status UNIMPLEMENTED (12)"},
		{"trailers-only OK", grpcAnswer{trailersOnly: true, grpcStatus: "0"}, "grpc-status OK without a response message"},
		{"status after a message", grpcAnswer{body: serving, grpcStatus: "14", grpcMessage: "draining%20now%"}, `grpc-status UNAVAILABLE (14): "draining now%"`},
		{"code without a name", grpcAnswer{trailersOnly: true, grpcStatus: "42"}, "grpc-status 42"},
		{"OK without a message", grpcAnswer{grpcStatus: "0"}, "grpc-status OK without a response message"},
		{"no grpc-status", grpcAnswer{body: serving}, "no grpc-status in the response"},
		{"invalid grpc-status", grpcAnswer{body: serving, grpcStatus: "abc"}, `invalid grpc-status "abc"`},
		{"HTTP 415", grpcAnswer{status: http.StatusUnsupportedMediaType, contentType: "text/plain"}, "HTTP status 415, not a gRPC response"},
		{"not application/grpc", grpcAnswer{contentType: "text/plain; charset=utf-8", body: serving}, `content-type "text/plain; charset=utf-8", not a gRPC response`},
		{"application/grpcx", grpcAnswer{contentType: "application/grpcx", body: serving}, `content-type "application/grpcx", not a gRPC response`},
		{"compressed", grpcAnswer{body: frame(1, []byte{8, 1}), grpcStatus: "0"}, "reading the response: compressed message, though the check asked for none"},
		{"oversized length", grpcAnswer{body: []byte{0, 0, 1, 0, 0}, grpcStatus: "0"}, "reading the response: message of 65536 bytes, over the limit of 16384"},
		{"truncated message", grpcAnswer{body: serving[:6], grpcStatus: "0"}, "reading the response: message cut short after 1 of 2 bytes"},
		{"truncated prefix", grpcAnswer{body: serving[:2], grpcStatus: "0"}, "reading the response: message prefix cut short after 2 of 5 bytes"},
		{"two messages", grpcAnswer{body: cat(serving, serving), grpcStatus: "0"}, "reading the response: more than one message in a unary response"},
		{"malformed message", grpcAnswer{body: frame(0, []byte{8}), grpcStatus: "0"}, "malformed HealthCheckResponse: bad status varint"},
	}
	answers := make(map[string]grpcAnswer)
	for _, tt := range tests {
		answers[tt.name] = tt.answer
	}
	target := serveH2C(t, answerWith(answers))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := GRPCCheck{Header: http.Header{"X-Case": {tt.name}}}
			err := c.Check(context.Background(), target)
			if tt.want == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Equal(t, `health: grpc `+target.String()+` service "": `+tt.want, err.Error())
		})
	}
}

func TestGRPCCheckRequest(t *testing.T) {
	var (
		mu  sync.Mutex
		got *http.Request
		in  []byte
	)
	target := serveH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, in = r, body
		mu.Unlock()
		answer(statusServing).ServeHTTP(w, r)
	}))
	target.Path = "/prefix/"
	c := GRPCCheck{
		Service:   "my.Service",
		Authority: "health.example",
		Header:    http.Header{"Authorization": {"Bearer secret"}},
		Timeout:   time.Second,
	}
	require.NoError(t, c.Check(context.Background(), target))

	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, 2, got.ProtoMajor, "HTTP/2")
	assert.Equal(t, http.MethodPost, got.Method)
	assert.Equal(t, "/prefix/grpc.health.v1.Health/Check", got.URL.Path, "joined to the target's path")
	assert.Equal(t, "health.example", got.Host, ":authority")
	assert.Equal(t, "application/grpc", got.Header.Get("Content-Type"))
	assert.Equal(t, "trailers", got.Header.Get("Te"))
	assert.Equal(t, "Bearer secret", got.Header.Get("Authorization"))
	assert.Empty(t, got.Header.Get("Grpc-Accept-Encoding"), "no compression asked for")
	timeout := got.Header.Get("Grpc-Timeout")
	assert.Regexp(t, `^[0-9]{1,8}[HMSmun]$`, timeout)
	assert.Equal(t, grpcRequest("my.Service"), in, "the request message")
}

// Checks of one target share one connection, which stays open between
// checks; CloseIdleConnections closes it.
func TestGRPCCheckReusesConnection(t *testing.T) {
	var mu sync.Mutex
	states := map[net.Conn]http.ConnState{}
	target := serveH2C(t, answer(statusServing), func(srv *http.Server) {
		srv.ConnState = func(c net.Conn, s http.ConnState) {
			mu.Lock()
			defer mu.Unlock()
			states[c] = s
		}
	})
	count := func() (total, closed int) {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range states {
			if s == http.StateClosed {
				closed++
			}
		}
		return len(states), closed
	}

	c := GRPCCheck{Interval: time.Minute}
	for range 5 {
		require.NoError(t, c.Check(context.Background(), target))
	}
	total, closed := count()
	assert.Equal(t, 1, total, "connections for 5 checks")
	assert.Equal(t, 0, closed, "connections closed between checks")

	c.CloseIdleConnections()
	assert.Eventually(t, func() bool {
		total, closed := count()
		return total == 1 && closed == 1
	}, 10*time.Second, 5*time.Millisecond, "the connection closes")
	require.NoError(t, c.Check(context.Background(), target), "a check after the close dials again")
	total, _ = count()
	assert.Equal(t, 2, total, "connections")
}

// Once checks stop, their connection closes by itself after the idle
// timeout (2·Interval+Timeout), without CloseIdleConnections: a balancer's
// Close, which stops the checks, leaves nothing open for long.
func TestGRPCCheckConnectionClosesWhenIdle(t *testing.T) {
	var closed atomic.Int32
	target := serveH2C(t, answer(statusServing), func(srv *http.Server) {
		srv.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateClosed {
				closed.Add(1)
			}
		}
	})
	c := GRPCCheck{Interval: 20 * time.Millisecond, Timeout: 10 * time.Millisecond} // idle timeout 50ms
	require.NoError(t, c.Check(context.Background(), target))
	assert.Eventually(t, func() bool { return closed.Load() == 1 }, 10*time.Second, 5*time.Millisecond, "the idle connection closes")
}

// The default transports are shared by checks of one Interval and Timeout,
// and time idle connections out after 2·Interval+Timeout.
func TestGRPCTransportPerSchedule(t *testing.T) {
	s := Schedule{Interval: 3 * time.Second, Timeout: time.Second}.WithDefaults()
	a, b := grpcTransport(s), grpcTransport(s)
	other := grpcTransport(Schedule{Interval: 4 * time.Second, Timeout: time.Second}.WithDefaults())
	assert.Same(t, a, b, "one transport per schedule")
	assert.NotSame(t, a, other, "another interval, another transport")
	assert.Equal(t, 7*time.Second, a.IdleConnTimeout)
	assert.Equal(t, 9*time.Second, other.IdleConnTimeout)
	assert.Equal(t, time.Second, a.TLSHandshakeTimeout)
	assert.Nil(t, a.Proxy, "no proxy")
	require.NotNil(t, a.Protocols)
	assert.True(t, a.Protocols.HTTP2() && a.Protocols.UnencryptedHTTP2(), "h2 and h2c")
	assert.False(t, a.Protocols.HTTP1(), "no HTTP/1, so that http:// targets get h2c")
}

func TestGRPCCheckHTTP1Server(t *testing.T) {
	srv := httptest.NewUnstartedServer(answer(statusServing))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the HTTP/2 preface it refuses
	srv.Start()
	t.Cleanup(srv.Close)
	err := GRPCCheck{}.Check(context.Background(), mustParse(t, srv.URL))
	require.Error(t, err)
	t.Log(err)
	assert.Contains(t, err.Error(), `health: grpc `+srv.URL+` service "": `)
}

func TestGRPCCheckTimeout(t *testing.T) {
	release := make(chan struct{})
	var timeout atomic.Value
	target := serveH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		timeout.Store(r.Header.Get("Grpc-Timeout"))
		select {
		case <-r.Context().Done(): // the check gave up and reset the stream
		case <-release:
		}
	}))
	defer close(release)
	err := GRPCCheck{Interval: time.Second, Timeout: 50 * time.Millisecond}.Check(context.Background(), target)
	require.Error(t, err)
	t.Log(err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "no answer within the 50ms Timeout")
	assert.NotEmpty(t, timeout.Load(), "grpc-timeout sent")
}

func TestGRPCCheckConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	err = GRPCCheck{}.Check(context.Background(), &url.URL{Scheme: "http", Host: addr})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "connection refused")
}

// https:// targets get h2 over TLS, with the certificates checked.
func TestGRPCCheckTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(answer(statusServing))
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake that fails
	srv.StartTLS()
	t.Cleanup(srv.Close)
	t.Cleanup(closeGRPCTransports)
	target := mustParse(t, srv.URL)

	tr := srv.Client().Transport.(*http.Transport).Clone() // trusts the server's certificate
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	assert.NoError(t, GRPCCheck{Transport: tr}.Check(context.Background(), target), "with a transport that trusts the server")

	err := GRPCCheck{}.Check(context.Background(), target)
	require.Error(t, err, "the default transport checks certificates")
	assert.Contains(t, err.Error(), "certificate")
}

func TestGRPCCheckTarget(t *testing.T) {
	target := serveH2C(t, answer(statusServing))
	assert.NoError(t, GRPCCheck{}.Check(context.Background(), &url.URL{Host: target.Host}), "no scheme means http")

	err := GRPCCheck{}.Check(context.Background(), &url.URL{Scheme: "ws", Host: target.Host})
	assert.EqualError(t, err, `health: grpc: target "ws://`+target.Host+`": scheme "ws" is neither http (h2c) nor https (h2)`)
	err = GRPCCheck{}.Check(context.Background(), &url.URL{Scheme: "http", Path: "/x"})
	assert.EqualError(t, err, `health: grpc: target "http:///x" has no host`)
}

func TestGRPCCheckValidate(t *testing.T) {
	tests := []struct {
		name string
		c    GRPCCheck
		want string // the error; "" for none
	}{
		{"zero", GRPCCheck{}, ""},
		{"full", GRPCCheck{Service: "a.B", Authority: "x.example:443", Header: http.Header{"Authorization": {"Bearer t"}}, Interval: time.Second, Timeout: time.Second, Rise: 1, Fall: 1, Jitter: -1}, ""},
		{"service not UTF-8", GRPCCheck{Service: "a\xff"}, `health: Service "a\xff" is not valid UTF-8`},
		{"authority with a space", GRPCCheck{Authority: "a b"}, `health: invalid Authority "a b"`},
		{"authority with a slash", GRPCCheck{Authority: "a/b"}, `health: invalid Authority "a/b"`},
		{"header name", GRPCCheck{Header: http.Header{"Bad Name": {"x"}}}, `health: invalid Header name "Bad Name"`},
		{"header value", GRPCCheck{Header: http.Header{"X-A": {"a\nb"}}}, `health: Header "X-A": value "a\nb" contains CR, LF or NUL`},
		{"grpc- header", GRPCCheck{Header: http.Header{"Grpc-Timeout": {"1S"}}}, `health: reserved Header "Grpc-Timeout": the check sets it, or HTTP/2 forbids it`},
		{"lower-case grpc- header", GRPCCheck{Header: http.Header{"grpc-encoding": {"gzip"}}}, `health: reserved Header "grpc-encoding": the check sets it, or HTTP/2 forbids it`},
		{"content-type", GRPCCheck{Header: http.Header{"Content-Type": {"application/json"}}}, `health: reserved Header "Content-Type": the check sets it, or HTTP/2 forbids it`},
		{"te", GRPCCheck{Header: http.Header{"Te": {"gzip"}}}, `health: reserved Header "Te": the check sets it, or HTTP/2 forbids it`},
		{"host", GRPCCheck{Header: http.Header{"Host": {"x"}}}, `health: reserved Header "Host": the check sets it, or HTTP/2 forbids it`},
		{"connection", GRPCCheck{Header: http.Header{"Connection": {"close"}}}, `health: reserved Header "Connection": the check sets it, or HTTP/2 forbids it`},
		{"schedule", GRPCCheck{Interval: -time.Second}, "health: negative Interval -1s"},
		{"timeout over interval", GRPCCheck{Interval: time.Second, Timeout: 2 * time.Second}, "health: Timeout 2s is longer than Interval 1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate()
			if tt.want == "" {
				assert.NoError(t, err)
				return
			}
			assert.EqualError(t, err, tt.want)
			// Check refuses an invalid check the same way, before sending.
			assert.EqualError(t, tt.c.Check(context.Background(), &url.URL{Scheme: "http", Host: "127.0.0.1:1"}), tt.want)
		})
	}
}

func TestGRPCCheckSchedule(t *testing.T) {
	c := GRPCCheck{Interval: time.Second, Timeout: time.Millisecond, Rise: 4, Fall: 5, Jitter: 0.5, StartDown: true}
	want := Schedule{Interval: time.Second, Timeout: time.Millisecond, Rise: 4, Fall: 5, Jitter: 0.5, StartDown: true}
	assert.Equal(t, want, c.Schedule())
	var asPointer Checker = &c
	assert.Equal(t, want, asPointer.(Scheduler).Schedule(), "as a pointer")
}

// Run takes a gRPC target down when it reports NOT_SERVING and brings it
// back when it reports SERVING again.
func TestGRPCCheckRun(t *testing.T) {
	var status atomic.Int32
	status.Store(int32(statusServing))
	target := serveH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		answer(servingStatus(status.Load())).ServeHTTP(w, r)
	}))
	c := GRPCCheck{Interval: 10 * time.Millisecond, Rise: 1, Fall: 1, Jitter: -1}

	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan Report, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, c, target, c.Schedule(), func(r Report) {
			if r.Changed {
				select {
				case changes <- r:
				case <-ctx.Done():
				}
			}
		})
	}()
	defer func() {
		cancel()
		<-done
		c.CloseIdleConnections()
	}()
	next := func() Report {
		t.Helper()
		select {
		case r := <-changes:
			return r
		case <-time.After(10 * time.Second): // a hang guard, not a timing check
			t.Fatal("no state change")
			return Report{}
		}
	}

	status.Store(int32(statusNotServing))
	r := next()
	assert.False(t, r.Up)
	assert.ErrorContains(t, r.Err, "serving status NOT_SERVING")

	status.Store(int32(statusServing))
	r = next()
	assert.True(t, r.Up)
	assert.NoError(t, r.Err)
}

// Many targets are checked at once through the shared transport.
func TestGRPCCheckConcurrent(t *testing.T) {
	up := serveH2C(t, answer(statusServing))
	down := serveH2C(t, answer(statusNotServing))
	c := GRPCCheck{}
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Go(func() {
			target := up
			if i%2 == 1 {
				target = down
			}
			errs[i] = c.Check(context.Background(), target)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if i%2 == 0 {
			assert.NoError(t, err, "check %d", i)
		} else {
			assert.ErrorContains(t, err, "NOT_SERVING", "check %d", i)
		}
	}
}

func TestGRPCMessage(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"plain", "plain"},
		{"a%20b", "a b"},
		{"%E2%82%AC", "€"},
		{"100%", "100%"},
		{"%zz", "%zz"},
		{"%4", "%4"},
		{"a%2", "a%2"},
		{strings.Repeat("x", grpcMessageMax), strings.Repeat("x", grpcMessageMax)},
		{strings.Repeat("x", grpcMessageMax+1), strings.Repeat("x", grpcMessageMax) + "…"},
		{strings.Repeat("x", grpcMessageMax-1) + "%E2%82%AC", strings.Repeat("x", grpcMessageMax-1) + "…"}, // the rune cut in two is dropped
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, grpcMessage(tt.in), "grpcMessage(%q)", tt.in)
	}
}

func TestIsGRPCContentType(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/grpc":               true,
		"application/grpc+proto":         true,
		"application/grpc;charset=utf-8": true,
		"Application/GRPC":               true,
		"application/grpcx":              false,
		"application/json":               false,
		"":                               false,
	} {
		assert.Equal(t, want, isGRPCContentType(ct), "%q", ct)
	}
}
