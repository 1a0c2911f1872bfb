package lb_test

// Proxy tests of streamed responses: server-sent events reach the client
// one by one, and a stream the client closes stops.

import (
	"bufio"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tinylb/lb"
)

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
