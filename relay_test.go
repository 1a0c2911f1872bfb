package lb

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/url"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinylb/lb/internal/rawhttp"
)

// The relay path (proxy.go) must do what httputil.ReverseProxy does. These
// tests send the same raw requests through a balancer on each path, to the
// same backend, and compare what the backend received and what the client
// got back, byte for byte but for the Date header; then they check the
// facts each case is about, so that two paths that were equally wrong
// would not pass.

// seenRequest is what the backend received.
type seenRequest struct {
	Method, URI, Host string
	Header            http.Header
	Body              string // sha256
	Trailer           http.Header
}

// gotResponse is what the client read: every informational response, then
// the final one.
type gotResponse struct {
	Interim []string // "103 Link=...;X-...=..."
	Status  int
	Header  http.Header
	Body    string
	Trailer http.Header
	ReadErr bool
}

// diffBackend answers by path and records each request under its X-Req.
type diffBackend struct {
	mu   sync.Mutex
	seen map[string]seenRequest
}

func (d *diffBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	sum := sha256.Sum256(body)
	d.mu.Lock()
	d.seen[r.Header.Get("X-Req")] = seenRequest{
		Method: r.Method, URI: r.RequestURI, Host: r.Host,
		Header: r.Header.Clone(), Body: fmt.Sprintf("%x", sum[:8]), Trailer: r.Trailer.Clone(),
	}
	d.mu.Unlock()
	h := w.Header()
	switch r.URL.Path {
	case "/hop":
		h.Set("Connection", "X-Resp-Hop")
		h.Set("X-Resp-Hop", "1")
		h.Set("Keep-Alive", "timeout=9")
		h.Set("Proxy-Authenticate", "Basic")
		h.Set("X-Keep", "kept")
		io.WriteString(w, "hop")
	case "/trailers":
		h.Set("Trailer", "X-Sum, X-Count")
		io.WriteString(w, "body with trailers")
		h.Set("X-Sum", "abc")
		h.Set("X-Count", "3")
	case "/trailers-unannounced":
		io.WriteString(w, "late trailers")
		w.(http.Flusher).Flush()
		h.Set(http.TrailerPrefix+"X-Late", "yes")
	case "/sse":
		h.Set("Content-Type", "Text/Event-Stream; charset=utf-8")
		for i := range 3 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
		}
	case "/chunked":
		io.WriteString(w, "part one,")
		w.(http.Flusher).Flush()
		io.WriteString(w, "part two")
	case "/early-hints":
		h.Set("Link", "</style.css>; rel=preload")
		h.Set("Connection", "X-Hint-Hop")
		h.Set("X-Hint-Hop", "1")
		w.WriteHeader(http.StatusEarlyHints)
		h.Del("Link")
		h.Del("Connection")
		h.Del("X-Hint-Hop")
		io.WriteString(w, "after hints")
	case "/nocontent":
		w.WriteHeader(http.StatusNoContent)
	case "/notmodified":
		h.Set("Etag", `"v1"`)
		w.WriteHeader(http.StatusNotModified)
	case "/cookies":
		h.Add("Set-Cookie", "a=1")
		h.Add("Set-Cookie", "b=2")
		io.WriteString(w, "cookies")
	case "/abort":
		h.Set("Content-Length", "100")
		io.WriteString(w, "only part")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	default:
		h.Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "plain "+r.Method)
	}
}

// gotOf is what the client got in x, as the cases compare it.
func gotOf(x *rawhttp.Exchange) gotResponse {
	var g gotResponse
	for _, res := range x.Interim {
		var kv []string
		for k, v := range res.Header {
			kv = append(kv, k+"="+strings.Join(v, ","))
		}
		sort.Strings(kv)
		g.Interim = append(g.Interim, fmt.Sprint(res.StatusCode, " ", strings.Join(kv, ";")))
	}
	res := x.Response
	if res == nil {
		g.ReadErr = true // the connection ended before a whole head
		return g
	}
	g.Status, g.Header, g.Body, g.Trailer, g.ReadErr = res.StatusCode, res.Header, string(x.Body), res.Trailer, x.Err != nil
	g.Header.Del("Date")
	return g
}

// diffCases are raw requests; {ID} is replaced with a request id.
var diffCases = []struct {
	name, raw string
	check     func(t *testing.T, s seenRequest, g gotResponse)
}{
	{"request hop-by-hop and forwarding headers", "GET /plain?a=1&b=2 HTTP/1.1\r\nHost: example.test\r\n" +
		"Connection: close, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic Zm9v\r\n" +
		"Proxy-Connection: keep-alive\r\nTe: deflate, Trailers\r\nForwarded: for=1.2.3.4\r\nX-Forwarded-For: 1.2.3.4\r\n" +
		"X-Forwarded-Host: evil\r\nX-Forwarded-Proto: https\r\nX-Real-Ip: 9.9.9.9\r\nUpgrade: h2c\r\n" +
		"User-Agent: ua/1\r\nX-Req: {ID}\r\n\r\n",
		func(t *testing.T, s seenRequest, g gotResponse) {
			for _, k := range []string{"X-Hop", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "Forwarded", "X-Real-Ip", "Upgrade", "Connection"} {
				if v, ok := s.Header[k]; ok {
					t.Errorf("backend got %s: %q", k, v)
				}
			}
			want := map[string]string{"Te": "trailers", "X-Forwarded-For": "127.0.0.1", "X-Forwarded-Host": "example.test",
				"X-Forwarded-Proto": "http", "User-Agent": "ua/1"}
			for k, v := range want {
				if got := s.Header.Get(k); got != v {
					t.Errorf("backend got %s = %q; want %q", k, got, v)
				}
			}
			if s.URI != "/plain?a=1&b=2" || g.Body != "plain GET" {
				t.Errorf("URI %q, body %q", s.URI, g.Body)
			}
		}},
	{"unparsable query, no User-Agent, Te without trailers", "GET /plain?a=1;b=2&c=%zz&d=4 HTTP/1.1\r\nHost: h\r\nTe: gzip\r\nConnection: close\r\nX-Req: {ID}\r\n\r\n",
		func(t *testing.T, s seenRequest, g gotResponse) {
			if s.URI != "/plain?d=4" {
				t.Errorf("URI %q; want the query re-encoded to d=4", s.URI)
			}
			if _, ok := s.Header["User-Agent"]; ok {
				t.Errorf("backend got User-Agent %q; want none", s.Header["User-Agent"])
			}
			if _, ok := s.Header["Te"]; ok {
				t.Errorf("backend got Te %q; want none", s.Header["Te"])
			}
		}},
	{"POST with a body", "POST /plain HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\nConnection: close\r\nX-Req: {ID}\r\n\r\nhello world",
		func(t *testing.T, s seenRequest, g gotResponse) {
			if s.Method != "POST" || s.Body != fmt.Sprintf("%x", sha("hello world")) || g.Body != "plain POST" {
				t.Errorf("method %s, body %s, answer %q", s.Method, s.Body, g.Body)
			}
		}},
	{"POST with Expect: 100-continue", "POST /plain HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n" +
		"Connection: close\r\nX-Req: {ID}\r\n\r\nhello",
		func(t *testing.T, s seenRequest, g gotResponse) {
			if s.Body != fmt.Sprintf("%x", sha("hello")) || g.Status != 200 || g.Body != "plain POST" {
				t.Errorf("body %s, answer %d %q", s.Body, g.Status, g.Body)
			}
			if len(g.Interim) != 1 || !strings.HasPrefix(g.Interim[0], "100") {
				t.Errorf("interim %q; want one 100 Continue", g.Interim)
			}
		}},
	{"chunked POST with a trailer", "POST /plain HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: X-Client-Trailer\r\n" +
		"Connection: close\r\nX-Req: {ID}\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Client-Trailer: ct\r\n\r\n",
		func(t *testing.T, s seenRequest, g gotResponse) {
			// The trailer's name reaches the backend and its value does
			// not, on both paths: the outbound request's Trailer is a
			// copy made before the client's body was read.
			if s.Body != fmt.Sprintf("%x", sha("hello world")) {
				t.Errorf("body %s", s.Body)
			}
		}},
	{"response hop-by-hop headers", "GET /hop HTTP/1.1\r\nHost: h\r\nConnection: close\r\nX-Req: {ID}\r\n\r\n",
		func(t *testing.T, s seenRequest, g gotResponse) {
			for _, k := range []string{"X-Resp-Hop", "Keep-Alive", "Proxy-Authenticate"} {
				if v, ok := g.Header[k]; ok {
					t.Errorf("client got %s: %q", k, v)
				}
			}
			if g.Header.Get("X-Keep") != "kept" || g.Body != "hop" {
				t.Errorf("header %v, body %q", g.Header, g.Body)
			}
		}},
	{"announced trailers", "GET /trailers HTTP/1.1\r\nHost: h\r\nTe: trailers\r\nConnection: close\r\nX-Req: {ID}\r\n\r\n",
		func(t *testing.T, s seenRequest, g gotResponse) {
			if g.Trailer.Get("X-Sum") != "abc" || g.Trailer.Get("X-Count") != "3" || g.Body != "body with trailers" {
				t.Errorf("trailer %v, body %q", g.Trailer, g.Body)
			}
		}},
	{"unannounced trailers", "GET /trailers-unannounced HTTP/1.1\r\nHost: h\r\nConnection: close\r\nX-Req: {ID}\r\n\r\n",
		func(t *testing.T, s seenRequest, g gotResponse) {
			if g.Trailer.Get("X-Late") != "yes" {
				t.Errorf("trailer %v; want X-Late: yes", g.Trailer)
			}
		}},
	{"server-sent events", "GET /sse HTTP/1.1\r\nHost: h\r\nConnection: close\r\nX-Req: {ID}\r\n\r\n",
		func(t *testing.T, s seenRequest, g gotResponse) {
			if g.Body != "data: 0\n\ndata: 1\n\ndata: 2\n\n" {
				t.Errorf("body %q", g.Body)
			}
		}},
	{"body of unknown length", "GET /chunked HTTP/1.1\r\nHost: h\r\nConnection: close\r\nX-Req: {ID}\r\n\r\n",
		func(t *testing.T, s seenRequest, g gotResponse) {
			if g.Body != "part one,part two" {
				t.Errorf("body %q", g.Body)
			}
		}},
	{"103 early hints", "GET /early-hints HTTP/1.1\r\nHost: h\r\nConnection: close\r\nX-Req: {ID}\r\n\r\n",
		func(t *testing.T, s seenRequest, g gotResponse) {
			if len(g.Interim) != 1 || !strings.HasPrefix(g.Interim[0], "103 Link=</style.css>; rel=preload") ||
				strings.Contains(g.Interim[0], "X-Hint-Hop") {
				t.Errorf("interim responses %q; want one 103 with Link and no X-Hint-Hop", g.Interim)
			}
			if g.Status != 200 || g.Body != "after hints" || g.Header.Get("Link") != "" {
				t.Errorf("final %d %q, Link %q", g.Status, g.Body, g.Header.Get("Link"))
			}
		}},
	{"HEAD", "HEAD /plain HTTP/1.1\r\nHost: h\r\nConnection: close\r\nX-Req: {ID}\r\n\r\n",
		func(t *testing.T, s seenRequest, g gotResponse) {
			if s.Method != "HEAD" || g.Status != 200 || g.Body != "" {
				t.Errorf("method %s, status %d, body %q", s.Method, g.Status, g.Body)
			}
		}},
	{"204", "GET /nocontent HTTP/1.1\r\nHost: h\r\nConnection: close\r\nX-Req: {ID}\r\n\r\n",
		func(t *testing.T, s seenRequest, g gotResponse) {
			if g.Status != 204 || g.Body != "" {
				t.Errorf("status %d, body %q", g.Status, g.Body)
			}
		}},
	{"304", "GET /notmodified HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"v1\"\r\nConnection: close\r\nX-Req: {ID}\r\n\r\n",
		func(t *testing.T, s seenRequest, g gotResponse) {
			if g.Status != 304 || g.Header.Get("Etag") != `"v1"` || s.Header.Get("If-None-Match") != `"v1"` {
				t.Errorf("status %d, header %v", g.Status, g.Header)
			}
		}},
	{"several Set-Cookie", "GET /cookies HTTP/1.1\r\nHost: h\r\nConnection: close\r\nX-Req: {ID}\r\n\r\n",
		func(t *testing.T, s seenRequest, g gotResponse) {
			if got := g.Header["Set-Cookie"]; !reflect.DeepEqual(got, []string{"a=1", "b=2"}) {
				t.Errorf("Set-Cookie %q", got)
			}
		}},
	{"backend aborts mid-body", "GET /abort HTTP/1.1\r\nHost: h\r\nConnection: close\r\nX-Req: {ID}\r\n\r\n",
		func(t *testing.T, s seenRequest, g gotResponse) {
			// The proxy aborts the connection: the client sees an
			// error, at the latest when the body ends short.
			if !g.ReadErr || g.Status == 200 && g.Body == "" {
				t.Errorf("status %d, read error %t, body %q; want an answer that fails to read", g.Status, g.ReadErr, g.Body)
			}
		}},
	{"too many query parameters", "GET /plain?" + strings.Repeat("a=1&", maxQueryParams) + "b=2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\nX-Req: {ID}\r\n\r\n",
		func(t *testing.T, s seenRequest, g gotResponse) {
			if s.URI != "/plain" {
				t.Errorf("URI of %d bytes; want the query dropped (url.ParseQuery refuses %d parameters)", len(s.URI), maxQueryParams+1)
			}
		}},
}

func sha(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:8]
}

func TestRelayMatchesReverseProxy(t *testing.T) {
	be := &diffBackend{seen: map[string]seenRequest{}}
	upstream := httptest.NewServer(be)
	defer upstream.Close()
	backend, err := NewBackend(upstream.URL)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := NewPool(backend)
	if err != nil {
		t.Fatal(err)
	}
	paths := []struct {
		name string
		opts []Option
	}{
		{"relay", nil},
		{"ReverseProxy", []Option{optionFunc(func(o *options) { o.viaReverseProxy = true })}},
	}
	addrs := make([]string, len(paths))
	for i, p := range paths {
		bal := New(pool, RoundRobin(), p.opts...)
		srv := httptest.NewServer(bal)
		defer bal.Close()
		defer srv.Close()
		addrs[i] = srv.Listener.Addr().String()
	}
	for n, c := range diffCases {
		t.Run(c.name, func(t *testing.T) {
			var seen [2]seenRequest
			var got [2]gotResponse
			for i, p := range paths {
				id := fmt.Sprint(n, p.name)
				got[i] = gotOf(rawhttp.Send(t, addrs[i], strings.ReplaceAll(c.raw, "{ID}", id)))
				be.mu.Lock()
				s, ok := be.seen[id]
				be.mu.Unlock()
				if !ok {
					t.Fatalf("%s: the backend did not get the request", p.name)
				}
				s.Header.Del("X-Req")
				seen[i] = s
				t.Run(p.name, func(t *testing.T) { c.check(t, s, got[i]) })
			}
			if !reflect.DeepEqual(seen[0], seen[1]) {
				t.Errorf("the backend saw\n relay:        %+v\n ReverseProxy: %+v", seen[0], seen[1])
			}
			if !reflect.DeepEqual(got[0], got[1]) {
				t.Errorf("the client got\n relay:        %+v\n ReverseProxy: %+v", got[0], got[1])
			}
		})
	}
}

// TestRelayPathChoice checks which requests take which path: an upgrade
// and a periodic flush interval go to ReverseProxy.
func TestRelayPathChoice(t *testing.T) {
	for _, c := range []struct {
		conn     string
		interval time.Duration
		relay    bool
	}{
		{"", 0, true},
		{"keep-alive", 0, true},
		{"close, x-foo", 0, true},
		{"Upgrade", 0, false},
		{"keep-alive, UPGRADE", 0, false},
		{"", -1, true},
		{"", 50 * time.Millisecond, false},
	} {
		var o options
		o.flushInterval = c.interval
		b := &Balancer{o: o}
		h := http.Header{}
		if c.conn != "" {
			h.Set("Connection", c.conn)
		}
		if got := b.relays(&http.Request{Header: h}); got != c.relay {
			t.Errorf("Connection %q, FlushInterval %v: relay %t; want %t", c.conn, c.interval, got, c.relay)
		}
	}
}

func TestCleanQuery(t *testing.T) {
	for in, want := range map[string]string{
		"":                "",
		"a=1&b=2":         "a=1&b=2",
		"a=%41&b=%2f":     "a=%41&b=%2f",
		"b=2;a=1":         "",
		"a=1&b=2;c=3&d=4": "a=1&d=4",
		"x=%zz&y=1":       "y=1",
		"x=%4":            "",
		"z=1&a=2&bad=%":   "a=2&z=1",
	} {
		if got := cleanQuery(in); got != want {
			t.Errorf("cleanQuery(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestHasTokenAndEventStream(t *testing.T) {
	if !hasToken([]string{"keep-alive", " Upgrade\t"}, "upgrade") || hasToken([]string{"upgrade-insecure"}, "upgrade") ||
		hasToken(nil, "upgrade") || !hasToken([]string{"a,,b , TRAILERS"}, "trailers") {
		t.Error("hasToken")
	}
	for v, want := range map[string]bool{
		"text/event-stream": true, " TEXT/Event-Stream ; charset=utf-8": true, "text/event-stream;": true,
		"text/event-streams": false, "text/plain": false, "": false, "text/event-ſtream": false,
	} {
		if got := isEventStream(http.Header{"Content-Type": {v}}); got != want {
			t.Errorf("isEventStream(%q) = %t; want %t", v, got, want)
		}
	}
}

// recordingTransport answers every request with a copy of resp's header
// and remembers what it was sent.
type recordingTransport struct {
	respHeader http.Header
	mu         sync.Mutex
	sent       []string
}

func (rt *recordingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
	}
	rt.mu.Lock()
	rt.sent = append(rt.sent, fmt.Sprintf("%s %s host=%q %v", r.Method, r.URL, r.Host, r.Header))
	rt.mu.Unlock()
	return &http.Response{
		StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: rt.respHeader.Clone(), Body: io.NopCloser(strings.NewReader("answer")), ContentLength: 6, Request: r,
	}, nil
}

// fuzzHeader reads "Key: value" lines into a header, keys as written.
func fuzzHeader(s string) http.Header {
	h := http.Header{}
	// Keys keep their spelling, but two spellings of one name ("x" and
	// "X") share the first one's entry: as two map keys, the order in
	// which a copy merges their values would follow Go's random map
	// order, and the two paths would differ by chance, not by code.
	spelled := map[string]string{}
	for line := range strings.SplitSeq(s, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k != "" {
			canon := http.CanonicalHeaderKey(k)
			if first, seen := spelled[canon]; seen {
				k = first
			} else {
				spelled[canon] = k
			}
			h[k] = append(h[k], strings.TrimSpace(v))
		}
	}
	return h
}

// FuzzRelayMatchesReverseProxy sends a request with fuzzed headers and
// query, answered with fuzzed response headers, down both paths, and
// compares what the transport was sent and what the client got.
func FuzzRelayMatchesReverseProxy(f *testing.F) {
	f.Add("Connection: X-A, keep-alive\nX-A: 1\nTe: trailers\nX-Forwarded-For: 1.2.3.4\nkeep-alive: x", "a=1;b=2",
		"Connection: X-B\nX-B: 2\nContent-Type: text/event-stream\nTrailer: X-T")
	f.Add("Forwarded: for=x\nX-Real-Ip: 1\nUser-Agent: u", "q=%zz&r=1", "Keep-Alive: 1\nproxy-authenticate: x\nSet-Cookie: a=1\nSet-Cookie: b=2")
	f.Add("Te: gzip, TRAILERS ,x\nConnection: te, Upgrade\nUpgrade: websocket", "", "Content-Type: Text/Event-Stream;x")
	f.Fuzz(func(t *testing.T, reqHeader, query, respHeader string) {
		results := [2]string{}
		for i, via := range []bool{false, true} {
			rt := &recordingTransport{respHeader: fuzzHeader(respHeader)}
			be, err := NewBackend("http://127.0.0.1:9/base")
			if err != nil {
				t.Fatal(err)
			}
			pool, err := NewPool(be)
			if err != nil {
				t.Fatal(err)
			}
			bal := New(pool, RoundRobin(), WithTransport(rt), optionFunc(func(o *options) { o.viaReverseProxy = via }))
			h := fuzzHeader(reqHeader)
			if hasToken(h["Connection"], "upgrade") {
				delete(h, "Connection") // upgrades always take ReverseProxy
			}
			req := &http.Request{
				Method: "GET", URL: &url.URL{Path: "/p", RawQuery: query}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
				Header: h, Host: "client.test", RemoteAddr: "127.0.0.1:5555", RequestURI: "/p?" + query,
			}
			rec := httptest.NewRecorder()
			bal.ServeHTTP(rec, req)
			bal.Close()
			results[i] = fmt.Sprintf("sent %q\ngot %d %v %q", rt.sent, rec.Code, rec.Header(), rec.Body.String())
		}
		if results[0] != results[1] {
			t.Errorf("relay:\n%s\nReverseProxy:\n%s", results[0], results[1])
		}
	})
}

// trickle returns at most step bytes per Read.
type trickle struct {
	data []byte
	step int
}

func (t *trickle) Read(p []byte) (int, error) {
	if len(t.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), t.step)], t.data)
	t.data = t.data[n:]
	return n, nil
}

func (t *trickle) Close() error { return nil }

// TestReadSrcFill checks that a body of known length is read until the
// transport's buffer is full, and any other body as it comes.
func TestReadSrcFill(t *testing.T) {
	for _, c := range []struct {
		fill   bool
		body   string
		bufLen int
		want   []string
	}{
		{true, "abcdefghijklmnopq", 10, []string{"abcdefghij", "klmnopq"}},
		{false, "abcdefghijklmnopq", 10, []string{"abc", "def", "ghi", "jkl", "mno", "pq"}},
		{true, "ab", 10, []string{"ab"}},
	} {
		rb := &replayBody{src: &trickle{data: []byte(c.body), step: 3}, fill: c.fill}
		var got []string
		buf := make([]byte, c.bufLen)
		for {
			n, err := rb.readSrc(buf)
			if n > 0 {
				got = append(got, string(buf[:n]))
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("fill %t: reads %q; want %q", c.fill, got, c.want)
		}
	}
}

// TestChunkedUploadStreams checks that a chunked request body reaches the
// backend piece by piece: the client sends its second piece only after the
// backend has read the first, which would deadlock if the proxy held
// pieces back.
func TestChunkedUploadStreams(t *testing.T) {
	got := make(chan string)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 64)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				got <- string(buf[:n])
			}
			if err != nil {
				close(got)
				return
			}
		}
	}))
	defer upstream.Close()
	be, _ := NewBackend(upstream.URL)
	pool, _ := NewPool(be)
	bal := New(pool, RoundRobin())
	defer bal.Close()
	front := httptest.NewServer(bal)
	defer front.Close()

	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", front.URL, pr) // no length: chunked
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	for _, piece := range []string{"first piece", "second piece"} {
		if _, err := io.WriteString(pw, piece); err != nil {
			t.Fatal(err)
		}
		select {
		case s := <-got:
			if s != piece {
				t.Fatalf("backend read %q; want %q", s, piece)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("backend did not get %q while the client waited for it", piece)
		}
	}
	pw.Close()
	for range got {
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestExpectContinueEndToEnd checks a client that waits for 100 Continue
// before it sends its body: the proxy must pass the backend's wish to read
// the body back to the client, on both paths.
func TestExpectContinueEndToEnd(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "got %q", body)
	}))
	defer upstream.Close()
	be, _ := NewBackend(upstream.URL)
	pool, _ := NewPool(be)
	for _, via := range []bool{false, true} {
		bal := New(pool, RoundRobin(), optionFunc(func(o *options) { o.viaReverseProxy = via }))
		front := httptest.NewServer(bal)
		client := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: time.Minute}}
		var got100 bool
		ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{Got100Continue: func() { got100 = true }})
		req, _ := http.NewRequestWithContext(ctx, "PUT", front.URL, strings.NewReader("payload"))
		req.Header.Set("Expect", "100-continue")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("viaReverseProxy %t: %v", via, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !got100 || resp.StatusCode != 200 || string(b) != `got "payload"` {
			t.Errorf("viaReverseProxy %t: 100 Continue %t, answer %d %q", via, got100, resp.StatusCode, b)
		}
		client.CloseIdleConnections()
		front.Close()
		bal.Close()
	}
}

// TestRelayHTTP2Front sends HTTP/2 requests (a body of unknown length, a
// response with trailers, a server-sent event stream) through a TLS front
// on both paths: the backend side is HTTP/1.1, so lengths, chunking and
// trailers are translated, and both paths must agree.
func TestRelayHTTP2Front(t *testing.T) {
	be := &diffBackend{seen: map[string]seenRequest{}}
	upstream := httptest.NewServer(be)
	defer upstream.Close()
	backend, _ := NewBackend(upstream.URL)
	pool, _ := NewPool(backend)
	type result struct {
		Proto, Body, Trailer, SeenBody string
		Status                         int
	}
	var results [2][]result
	for i, via := range []bool{false, true} {
		bal := New(pool, RoundRobin(), optionFunc(func(o *options) { o.viaReverseProxy = via }))
		front := httptest.NewUnstartedServer(bal)
		front.EnableHTTP2 = true
		front.StartTLS()
		client := front.Client()
		for n, c := range []struct{ method, path, body string }{
			{"POST", "/plain", "streamed without a length"},
			{"GET", "/trailers", ""},
			{"GET", "/sse", ""},
		} {
			id := fmt.Sprint("h2-", via, n)
			var body io.Reader
			if c.body != "" {
				body = io.MultiReader(strings.NewReader(c.body)) // no length: the request streams
			}
			req, _ := http.NewRequest(c.method, front.URL+c.path, body)
			req.Header.Set("X-Req", id)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("viaReverseProxy %t, %s %s: %v", via, c.method, c.path, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			be.mu.Lock()
			seen := be.seen[id]
			be.mu.Unlock()
			r := result{Proto: resp.Proto, Status: resp.StatusCode, Body: string(b), Trailer: fmt.Sprint(resp.Trailer), SeenBody: seen.Body}
			if r.Proto != "HTTP/2.0" || r.Status != 200 {
				t.Errorf("viaReverseProxy %t, %s %s: %s %d", via, c.method, c.path, r.Proto, r.Status)
			}
			results[i] = append(results[i], r)
		}
		client.CloseIdleConnections()
		front.Close()
		bal.Close()
	}
	want := []string{"plain POST", "body with trailers", "data: 0\n\ndata: 1\n\ndata: 2\n\n"}
	for n, r := range results[0] {
		if r.Body != want[n] {
			t.Errorf("request %d: body %q; want %q", n, r.Body, want[n])
		}
	}
	if results[0][0].SeenBody != fmt.Sprintf("%x", sha("streamed without a length")) {
		t.Errorf("the backend got body %s", results[0][0].SeenBody)
	}
	if !strings.Contains(results[0][1].Trailer, "X-Sum:[abc]") {
		t.Errorf("trailers over HTTP/2: %s", results[0][1].Trailer)
	}
	if !reflect.DeepEqual(results[0], results[1]) {
		t.Errorf("relay %+v\nReverseProxy %+v", results[0], results[1])
	}
}
