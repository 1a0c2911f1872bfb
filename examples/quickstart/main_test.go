package main

import (
	"context"
	"go.uber.org/goleak"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// demoOutput is what the demo prints, on every run. README.md shows it too.
const demoOutput = `tinylb quickstart: backends a, b, c on 127.0.0.1, each answering its name.

Round robin: lb.RoundRobin(), 12 requests
  order    a b c a b c a b c a b c
  a         4  ####
  b         4  ####
  c         4  ####

Smooth weighted: lb.SmoothWeighted(), weights a=5 b=1 c=1, 14 requests
  order    a a b a c a a | a a b a c a a
  a        10  ##########
  b         2  ##
  c         2  ##

Least connections: lb.LeastConn(), 2 long requests held open, then 6 short ones
  long     a b
  short    c c c c c c

Consistent hash: lb.ConsistentHash(lb.HeaderKey("X-User")), 3 requests per user
  alice    a a a
  bob      a a a
  carol    c c c
  dave     c c c
  erin     b b b
  frank    c c c
  a second, independent balancer agrees on 6 of 6 users
`

func TestDemo(t *testing.T) {
	for range 3 {
		var out strings.Builder
		if err := run(t.Context(), &out, "", true); err != nil {
			t.Fatal(err)
		}
		if out.String() != demoOutput {
			t.Fatalf("demo printed\n%s\nwant\n%s", out.String(), demoOutput)
		}
	}
}

// lines is an io.Writer that hands each complete line to a channel.
type lines struct {
	mu  sync.Mutex
	buf string
	ch  chan string
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf += string(p)
	for {
		line, rest, ok := strings.Cut(l.buf, "\n")
		if !ok {
			return len(p), nil
		}
		l.buf = rest
		l.ch <- line
	}
}

func TestServe(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &lines{ch: make(chan string, 100)}
	done := make(chan error, 1)
	go func() { done <- run(ctx, out, "127.0.0.1:0", false) }()

	serving := regexp.MustCompile(`^Serving .* on (http://127\.0\.0\.1:\d+)\.`)
	var base string
	for base == "" {
		select {
		case line := <-out.ch:
			if m := serving.FindStringSubmatch(line); m != nil {
				base = m[1]
			}
		case err := <-done:
			t.Fatalf("run returned before serving: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("no \"Serving\" line within 30s")
		}
	}

	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	var got []string
	for range 7 {
		resp, err := client.Get(base + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: status %d, error %v", base, resp.StatusCode, err)
		}
		got = append(got, strings.TrimSpace(string(body)))
	}
	if s := strings.Join(got, " "); s != "a a b a c a a" {
		t.Errorf("7 requests went to %s, want a a b a c a a", s)
	}

	cancel() // as Ctrl-C does
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after Ctrl-C: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return within 30s of Ctrl-C")
	}
}

// The demo closes every server and balancer it starts.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
