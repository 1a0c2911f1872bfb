package lb_test

// Proxy tests of failures on either side: clients that cancel or abort an
// upload, backends that die mid-response, in-flight counts that settle
// whatever the answer, and error answers that name no backend.

import (
	"context"
	"errors"
	"fmt"
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
