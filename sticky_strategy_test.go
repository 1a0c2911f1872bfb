package lb_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/strategy"
)

// countingStrategy is a user's round robin that counts its Picks and the
// Dones it gets, as a strategy with per-pick state would.
type countingStrategy struct {
	next, picks, dones atomic.Int64
	bad                atomic.Int64 // Dones for a member with no pick of its own outstanding
	outstanding        [8]atomic.Int64
}

type countingPicker struct {
	s   *countingStrategy
	set *strategy.Set
}

func (s *countingStrategy) Picker(set *strategy.Set) strategy.Picker {
	return &countingPicker{s: s, set: set}
}

func (p *countingPicker) Pick(_ *http.Request, tried *strategy.Tried) int {
	for range len(p.set.Usable) {
		i := p.set.Usable[int(p.s.next.Add(1)-1)%len(p.set.Usable)]
		if !tried.Has(p.set.All[i]) {
			p.s.picks.Add(1)
			p.s.outstanding[i].Add(1)
			return i
		}
	}
	return -1
}

func (p *countingPicker) Done(i int, _ strategy.Result) {
	p.s.dones.Add(1)
	if p.s.outstanding[i].Add(-1) < 0 {
		p.s.bad.Add(1)
	}
}

// A sticky request is no pick of a user's strategy: it gets neither the
// Pick nor a Done, so the strategy's Pick/Done pairs stay whole.
func TestStickyUserStrategyBookkeeping(t *testing.T) {
	t.Parallel()
	a, b := startUpstream(t, "a", nil), startUpstream(t, "b", nil)
	pool, bes := poolOf(t, a.url, b.url)
	s := &countingStrategy{}
	g := startGateway(t, pool, s, lb.WithStickyCookie(lb.StickyCookie{Secret: stickySecret}))
	cookies := cookiesByBackend(t, g, "tinylb", 2)
	picks := s.picks.Load()
	for range 10 {
		assert.Equal(t, "a", g.stickyGet(t, "tinylb", cookies["a"]).name)
		assert.Equal(t, "b", g.stickyGet(t, "tinylb", cookies["b"]).name)
	}
	assert.Equal(t, picks, s.picks.Load(), "sticky requests were picked by the strategy")
	for range 4 {
		g.stickyGet(t, "tinylb", "")
	}
	eventually(t, "every request over", func() bool {
		return bes[0].Active()+bes[1].Active() == 0 && s.dones.Load() >= s.picks.Load()
	})
	assert.Equal(t, s.picks.Load(), s.dones.Load(), "Picks and Dones differ")
	assert.Zero(t, s.bad.Load(), "Done without a Pick")
}

// Least connections counts the requests a cookie sends to a backend: with
// two held on a, new requests go to b; once they end, a and b share again.
func TestStickyLeastConnCountsStickyRequests(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	hold := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-Hold") != "" {
				<-release
			}
			answerName(w, r, name)
		}
	}
	a, b := startUpstream(t, "a", hold("a")), startUpstream(t, "b", hold("b"))
	pool, bes := poolOf(t, a.url, b.url)
	g := startGateway(t, pool, lb.LeastConn(), lb.WithStickyCookie(lb.StickyCookie{Secret: stickySecret}))
	cookies := cookiesByBackend(t, g, "tinylb", 2)

	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			out, err := g.do(context.Background(), http.MethodGet, "/", "", nil,
				http.Header{"Cookie": {"tinylb=" + cookies["a"]}, "X-Hold": {"1"}})
			if assert.NoError(t, err) {
				assert.True(t, strings.HasPrefix(string(out.body), "a|"), "held sticky request answered by %q", out.body)
			}
		})
	}
	eventually(t, "two sticky requests in flight on a", func() bool { return bes[0].Active() == 2 })
	for range 3 {
		assert.Equal(t, "b", g.served(t, nil), "least connections sent a request to a, busy with two sticky ones")
	}
	close(release)
	wg.Wait()
	eventually(t, "a idle", func() bool { return bes[0].Active() == 0 })
	seen := map[string]int{}
	for range 4 {
		seen[g.served(t, nil)]++
	}
	assert.Equal(t, map[string]int{"a": 2, "b": 2}, seen, "the sticky requests' Dones were lost or doubled")
}

// A backend probing after an ejection takes one request at a time; a
// sticky request takes that probe if it is free, and goes elsewhere (with
// a new cookie) while it is out.
func TestStickyProbingBackend(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	a := startUpstream(t, "a", func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Header.Get("X-Fail") != "":
			hcHijackClose(w)
			return
		case r.Header.Get("X-Hold") != "":
			<-release
		}
		answerName(w, r, "a")
	})
	b := startUpstream(t, "b", nil)
	pool, bes := poolOf(t, a.url, b.url)
	clk := newHCClock()
	g := startGateway(t, pool, nil, lb.WithStickyCookie(lb.StickyCookie{Secret: stickySecret}), lb.WithClock(clk.Now))
	cookies := cookiesByBackend(t, g, "tinylb", 2)

	// The cookie sends the failing request to a: a is ejected for 10s.
	out := g.mustDo(t, http.MethodGet, "/", "", nil, http.Header{"Cookie": {"tinylb=" + cookies["a"]}, "X-Fail": {"1"}})
	require.Equal(t, http.StatusOK, out.status)
	require.Equal(t, lb.StateEjected, g.bal.Stats().Backends[0].State)
	assert.Equal(t, "b", g.stickyGet(t, "tinylb", cookies["a"]).name, "a sticky request reached an ejected backend")

	clk.Advance(11 * time.Second)
	require.Equal(t, lb.StateProbing, g.bal.Stats().Backends[0].State)
	var wg sync.WaitGroup
	wg.Go(func() {
		out, err := g.do(context.Background(), http.MethodGet, "/", "", nil,
			http.Header{"Cookie": {"tinylb=" + cookies["a"]}, "X-Hold": {"1"}})
		if assert.NoError(t, err) {
			assert.True(t, strings.HasPrefix(string(out.body), "a|"), "the probe was answered by %q", out.body)
			assert.Nil(t, setCookieNamed(t, out.header, "tinylb"))
		}
	})
	eventually(t, "the sticky probe on a", func() bool { return bes[0].Active() == 1 })
	other := g.stickyGet(t, "tinylb", cookies["a"])
	assert.Equal(t, "b", other.name, "a second request reached a while its probe was out")
	require.NotNil(t, other.set)
	assert.Equal(t, cookies["b"], other.set.Value)
	close(release)
	wg.Wait()
	eventually(t, "a back up after its probe", func() bool { return g.bal.Stats().Backends[0].State == lb.StateUp })
	assert.Equal(t, "a", g.stickyGet(t, "tinylb", cookies["a"]).name)
}

// A gRPC call gets the cookie in its response headers, before the
// messages and the trailers, and calls that carry it stick, over h2c and
// HTTP/1.1 fronts.
func TestStickyGRPC(t *testing.T) {
	t.Parallel()
	a, b := startRPCBackend(t, rpcReply("a")), startRPCBackend(t, rpcReply("b"))
	pool, _ := poolOf(t, a.url, b.url)
	f := serveRPC(t, lb.New(pool, lb.RoundRobin(), lb.WithTransport(rpcTransport(t)),
		lb.WithStickyCookie(lb.StickyCookie{Secret: stickySecret})))
	call := func(c *http.Client, cookie string) (string, *http.Cookie, http.Header) {
		req, err := http.NewRequest(http.MethodPost, f.url+"/lbtest.Echo/Say", io.NopCloser(bytes.NewReader(rpcFrame([]byte("hi")))))
		require.NoError(t, err)
		req.Header.Set("Content-Type", grpcContentType)
		req.Header.Set("Te", "trailers")
		if cookie != "" {
			req.Header.Set("Cookie", "tinylb="+cookie)
		}
		resp, err := c.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, "0", resp.Trailer.Get("Grpc-Status"), "the call's trailers")
		require.Greater(t, len(body), 5)
		return string(body[5:]), setCookieNamed(t, resp.Header, "tinylb"), resp.Header
	}
	for _, c := range []*http.Client{f.h2, f.h1} {
		first, set, _ := call(c, "")
		require.NotNil(t, set, "a gRPC answer sets no cookie")
		for range 5 {
			name, again, h := call(c, set.Value)
			assert.Equal(t, first, name)
			assert.Nil(t, again)
			assert.Equal(t, grpcContentType, h.Get("Content-Type"))
		}
	}
	assert.Equal(t, int64(10), f.bal.Stats().StickyHits)
}
