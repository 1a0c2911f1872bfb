package reliability

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tinylb/lb/internal/faultkit"
	"github.com/tinylb/lb/internal/rawhttp"
)

// B3: malformed and ambiguous requests over raw TCP to an http.Server
// fronting the balancer. Each is refused with 4xx (or 501) or normalized
// so that the backend sees one framing; nothing ever reaches /smuggled.
// (The protection is net/http's parser: go.mod requires go ≥ 1.25.0,
// past the CVE-2025-22871 fix of Go 1.24.2.)
func TestB3_MalformedRequests(t *testing.T) {
	e := newEnv(t, envConfig{n: 1, backend: func(int) faultkit.Config { return faultkit.Config{Keep: true} }})
	bodyErrs := 0
	for _, p := range smugglePayloads() {
		out, err := faultkit.RawExchange(e.front.Addr, []byte(p.raw), 200*time.Millisecond)
		if err != nil {
			t.Errorf("B3 %s: %v", p.name, err)
			continue
		}
		statuses := responseStatuses(out)
		if p.name == "bare LF chunk size" || p.name == "chunk extension LF" || p.name == "chunk size overflow" {
			// A broken body is the client's fault: the balancer must not
			// answer 502 and count it against the backend (see below).
			for _, s := range statuses {
				if s == http.StatusBadGateway {
					bodyErrs++
				}
			}
		}
		if len(statuses) == 0 {
			t.Errorf("B3 %s: no answer at all (%q)", p.name, out)
		}
		for _, s := range statuses {
			if s/100 != 2 && s/100 != 4 && s != http.StatusNotImplemented && s != http.StatusBadGateway {
				t.Errorf("B3 %s: answered %d", p.name, s)
			}
		}
		t.Logf("B3 %-26s -> %v", p.name, statuses)
	}
	if bodyErrs > 0 {
		st := e.bal.Stats()
		t.Errorf("BUG(B3): %d requests whose chunked body the client broke were answered 502 and counted as backend failures (Stats: %d failures): a client can eject healthy backends with bad bodies (I6)", bodyErrs, st.Failures)
	}
	b := e.backends[0]
	if n := b.Path("/smuggled"); n != 0 {
		t.Errorf("B3: %d requests reached /smuggled", n)
	}
	// Whatever got through carried one framing, and the hidden request
	// only ever as body bytes.
	for _, s := range b.Seen() {
		if s.ID == "smuggled" {
			t.Errorf("B3: the hidden request arrived as a request: %+v", s)
		}
		if len(s.Header["Transfer-Encoding"]) > 0 && len(s.Header["Content-Length"]) > 0 {
			t.Errorf("B3: backend got both Transfer-Encoding and Content-Length")
		}
	}
}

// responseStatuses parses the statuses of the HTTP responses in raw.
func responseStatuses(raw []byte) []int {
	var out []int
	br := bufio.NewReader(bytes.NewReader(raw))
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return out
		}
		out = append(out, resp.StatusCode)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// badResponses are raw answers a broken or hostile backend gives; "%s" is
// the request ID.
var badResponses = map[string]string{
	"TE+CL with split response": "HTTP/1.1 200 OK\r\nX-Req-Id: %s\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n" +
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Req-Id: spoofed\r\nX-Backend: spoofed\r\n\r\nspoof",
	"bad transfer encoding": "HTTP/1.1 200 OK\r\nX-Req-Id: %s\r\nTransfer-Encoding: gzip\r\n\r\nxxxx",
	"bad status line":       "HTTP/1.1 abc OK\r\nX-Req-Id: %s\r\nContent-Length: 0\r\n\r\n",
	"not HTTP":              "SSH-2.0-OpenSSH_9.6\r\n",
	"bad header line":       "HTTP/1.1 200 OK\r\nX-Req-Id %s\r\nContent-Length: 0\r\n\r\n",
	"two content lengths":   "HTTP/1.1 200 OK\r\nX-Req-Id: %s\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
	"1xx storm":             strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n", 200) + "HTTP/1.1 200 OK\r\nX-Req-Id: %s\r\nContent-Length: 0\r\n\r\n",
	"unrequested 101":       "HTTP/1.1 101 Switching Protocols\r\nX-Req-Id: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
	"huge headers":          "HTTP/1.1 200 OK\r\nX-Req-Id: %s\r\nX-Big: " + strings.Repeat("a", 11<<20) + "\r\nContent-Length: 0\r\n\r\n",
	"body shorter than CL":  "HTTP/1.1 200 OK\r\nX-Req-Id: %s\r\nContent-Length: 100\r\n\r\nshort",
}

// B4: malformed answers from a backend. The client gets 502 (or, for a
// body cut short, an error), never the backend's garbage, and on a
// keep-alive client connection the next answer still carries its own ID.
func TestB4_MalformedResponses(t *testing.T) {
	raw, err := faultkit.NewRawServer(func(c net.Conn, br *bufio.Reader) {
		for {
			req, _, err := faultkit.ReadRequest(br)
			if err != nil {
				return
			}
			id := req.Header.Get(faultkit.HeaderID)
			if bad, ok := badResponses[req.URL.Query().Get("bad")]; ok {
				fmt.Fprintf(c, bad, id)
				if !strings.Contains(bad, "split") {
					return
				}
				continue
			}
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nX-Req-Id: %s\r\nX-Backend: raw\r\nContent-Length: 2\r\n\r\nok", id)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	e := newEnv(t, envConfig{n: 1})
	if err := e.pool.Update(e.member(raw.URL())); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", e.front.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	i := 0
	for name := range badResponses {
		i++
		id := fmt.Sprint("b4-", i)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		relayed1xx = 0
		fmt.Fprintf(c, "GET /?bad=%s HTTP/1.1\r\nHost: x\r\nX-Req-Id: %s\r\n\r\n", url.QueryEscape(name), id)
		resp, err := readFinal(br)
		var body []byte
		var berr error
		if err != nil {
			// Only a cut body may end the client connection before the
			// answer (the buffered headers die with it): visible.
			if name != "body shorter than CL" {
				t.Fatalf("B4 %s: %v", name, err)
			}
			resp = &http.Response{StatusCode: 0, Header: http.Header{}, Body: http.NoBody}
			berr = err
		} else {
			body, berr = io.ReadAll(resp.Body)
		}
		if relayed1xx > 5 {
			t.Errorf("BUG(B4): %s: the balancer relayed %d informational responses (net/http's own limit is 5; a Got1xxResponse hook lifts it)", name, relayed1xx)
		}
		switch {
		case name == "1xx storm":
			// Past the limit the balancer may fail the attempt (502) or
			// drop the excess and relay the final answer.
			if resp.StatusCode != http.StatusBadGateway && resp.StatusCode != 200 {
				t.Errorf("B4 %s: status %d", name, resp.StatusCode)
			}
		case name == "TE+CL with split response":
			// net/http reads the chunked body and drops the Content-Length:
			// one framing, and the split response never surfaces.
			if resp.StatusCode != 200 || string(body) != "hello" || berr != nil {
				t.Errorf("B4 %s: %d %q %v", name, resp.StatusCode, body, berr)
			}
		case name == "body shorter than CL":
			if berr == nil {
				t.Errorf("B4 %s: a cut body read without error", name)
			}
		case resp.StatusCode != http.StatusBadGateway:
			t.Errorf("B4 %s: status %d, want 502", name, resp.StatusCode)
		}
		if resp.Header.Get(faultkit.HeaderID) == "spoofed" || strings.Contains(string(body), "spoof") {
			t.Errorf("B4 %s: the split response reached the client", name)
		}
		if berr != nil {
			// The connection was aborted: open a new one.
			c.Close()
			c, err = net.Dial("tcp", e.front.Addr)
			if err != nil {
				t.Fatal(err)
			}
			br = bufio.NewReader(c)
		}
		// The next request on the same client connection gets its own answer.
		next := id + "-next"
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Req-Id: %s\r\n\r\n", next)
		resp, err = readFinal(br)
		if err != nil {
			t.Fatalf("B4 %s: next request: %v", name, err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 || resp.Header.Get(faultkit.HeaderID) != next {
			t.Errorf("B4 %s: next answer %d carries ID %q, want 200 and %q", name, resp.StatusCode, resp.Header.Get(faultkit.HeaderID), next)
		}
	}
	e.assertContained(raw.Addr())
}

// readFinal reads responses from br up to the final one, skipping the
// 1xx responses the balancer relays, and counts those in relayed1xx.
func readFinal(br *bufio.Reader) (*http.Response, error) {
	for range 1000 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode >= 200 || resp.StatusCode == 101 {
			return resp, err
		}
		relayed1xx++
	}
	return nil, errors.New("more than 1000 informational responses relayed")
}

var relayed1xx int

// B5 (HTTP/1): a 2 MiB header gets 431; 10,000 small headers do no harm.
func TestB5_HeaderFloods(t *testing.T) {
	e := newEnv(t, envConfig{n: 1, backend: func(int) faultkit.Config { return faultkit.Config{Keep: true} }})
	resp := rawhttp.Do(t, e.front.Addr, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 2<<20)+"\r\n\r\n")
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("B5: 2 MiB header: %d, want 431", resp.StatusCode)
	}
	var sb strings.Builder
	for i := range 10000 {
		fmt.Fprintf(&sb, "X-H-%d: v\r\n", i)
	}
	resp = rawhttp.Do(t, e.front.Addr, "GET / HTTP/1.1\r\nHost: x\r\nX-Req-Id: many\r\nConnection: close\r\n"+sb.String()+"\r\n")
	if resp.StatusCode != 200 {
		t.Errorf("B5: 10k headers: %d", resp.StatusCode)
	}
	if s := e.backends[0].SeenID("many"); len(s) != 1 || len(s[0].Header) < 10000 {
		t.Errorf("B5: 10k headers did not arrive whole")
	}
	if a := e.do(faultkit.Request{N: 10}); !a.OK() {
		t.Errorf("B5: service after the floods: %+v", a)
	}
}

// B6: the path and query reach the backend byte for byte, joined once
// after the backend URL's path, with no decoding or cleaning; only
// unparsable query parameters (with ';') are dropped, as
// net/http/httputil does since CVE-2022-2880.
func TestB6_PathAndQueryFidelity(t *testing.T) {
	b := faultkit.MustBackend(faultkit.Config{Name: "a", Keep: true})
	defer b.Close()
	e := newEnv(t, envConfig{n: 1})
	if err := e.pool.Update(e.member(b.URL + "/base/")); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("q=abcdefgh&", 8<<10/11)
	for i, tc := range []struct{ sent, want string }{
		{"/a%2Fb/c", "/base/a%2Fb/c"},
		{"/%252e%252e/x", "/base/%252e%252e/x"},
		{"/%2e%2e/x", "/base/%2e%2e/x"},
		{"/../x", "/base/../x"},
		{"/./x/./y", "/base/./x/./y"},
		{"//x", "/base//x"},
		{"//evil.example/x", "/base//evil.example/x"},
		{"/x//y///z", "/base/x//y///z"},
		{"/%C3%BC/%E2%82%AC", "/base/%C3%BC/%E2%82%AC"},
		{"/a+b%20c", "/base/a+b%20c"},
		{"/x?a=1&b=%2F&c=", "/base/x?a=1&b=%2F&c="},
		{"/x?a=1;b=2&c=3", "/base/x?c=3"},
		{"/x?" + long, "/base/x?" + long},
		{"/x?%zz=1&ok=2", "/base/x?ok=2"},
		{"/x?", "/base/x?"},
		{"/", "/base/"},
	} {
		id := fmt.Sprint("b6-", i)
		resp := rawhttp.Do(t, e.front.Addr, "GET "+tc.sent+" HTTP/1.1\r\nHost: x\r\nX-Req-Id: "+id+"\r\nConnection: close\r\n\r\n")
		if resp.StatusCode != 200 {
			t.Errorf("B6: %.60s: status %d", tc.sent, resp.StatusCode)
			continue
		}
		s := b.SeenID(id)
		if len(s) != 1 {
			t.Fatalf("B6: %s seen %d times", tc.sent, len(s))
		}
		if s[0].RequestURI != tc.want {
			t.Errorf("B6: sent %.60q, backend got %.60q, want %.60q", tc.sent, s[0].RequestURI, tc.want)
		}
		if s[0].Host != b.Addr {
			t.Errorf("B6: %s changed the host to %q", tc.sent, s[0].Host)
		}
	}
	e.assertContained(b.Addr)
}
