package faultkit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Request is one request of a [Client].
type Request struct {
	// ID identifies the request; empty means the client numbers it.
	ID string
	// Method defaults to GET, or POST when Body > 0.
	Method string
	// Path defaults to "/".
	Path string
	// Query is added to the URL's query (without "?").
	Query string
	// N is the length of the response body asked for (query n).
	N int64
	// Body is the length of the request body: RequestBody(ID, Body).
	Body int64
	// Stream asks the backend to stream its answer in flushed pieces.
	Stream bool
	// Header holds extra request headers.
	Header http.Header
	// CancelAfter cancels the request once this many response body bytes
	// were read (negative: right after the headers arrive). Zero: never.
	CancelAfter int64
}

// Attempt is the record of one request a Client made.
type Attempt struct {
	ID, Method string
	Start      time.Time
	Duration   time.Duration
	// Status is the response status, 0 when no response arrived.
	Status int
	// Err is the transport error, or the error reading the body: what
	// the client can see went wrong.
	Err error
	// Mismatch is set when a body read without error differs from the
	// expected one (wrong bytes, too long, or cut short cleanly).
	Mismatch error
	// Canceled is set when the client canceled the request itself.
	Canceled bool
	// Backend is the X-Backend of the response: empty when the balancer
	// answered by itself.
	Backend string
	// EchoID is the X-Req-Id of the response.
	EchoID string
	// Received is the number of body bytes read that matched the expected
	// body from its start.
	Received int64
	// Expected is the length of the body expected from a backend.
	Expected int64
	// BodyOK: the body was exactly Body(ID, N).
	BodyOK bool
	// SentSHA is the SHA-256 of the request body sent; EchoSHA is what the
	// backend said it read (X-Body-Sha256).
	SentSHA, EchoSHA string
	// Header is the response header.
	Header http.Header
	// Trailer is the response trailer.
	Trailer http.Header
}

// Idempotent reports whether the attempt's method may be repeated.
func (a Attempt) Idempotent() bool {
	switch a.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// OK reports whether the attempt got a 2xx from a backend, intact.
func (a Attempt) OK() bool {
	return a.Err == nil && a.Status/100 == 2 && a.Breach() == ""
}

// Breach returns what breaks integrity (I1) in the attempt, or "": a
// response that looks complete (no error) but is not exactly what a
// backend sent for this request.
func (a Attempt) Breach() string {
	if a.Err != nil || a.Status == 0 || a.Canceled {
		return "" // a visible error
	}
	if a.Backend == "" {
		if a.Status/100 == 2 {
			return fmt.Sprintf("%s: status %d from no backend", a.ID, a.Status)
		}
		return "" // the balancer's own error answer
	}
	switch {
	case a.EchoID != a.ID:
		return fmt.Sprintf("%s: response of request %q (backend %s)", a.ID, a.EchoID, a.Backend)
	case !a.BodyOK:
		return fmt.Sprintf("%s: body wrong without an error after %d of %d bytes: %v (backend %s)", a.ID, a.Received, a.Expected, a.Mismatch, a.Backend)
	case a.EchoSHA != "" && a.EchoSHA != a.SentSHA:
		return fmt.Sprintf("%s: backend %s read a request body with SHA-256 %s, sent %s", a.ID, a.Backend, a.EchoSHA, a.SentSHA)
	}
	return ""
}

// RequestBody returns a reader of the deterministic request body of id.
func RequestBody(id string, n int64) io.Reader { return BodyReader("req:"+id, n) }

// RequestBodySHA returns the hex SHA-256 of RequestBody(id, n).
func RequestBodySHA(id string, n int64) string { return BodySHA("req:"+id, n) }

// Client sends requests to a base URL and records every attempt.
type Client struct {
	// HTTP is the client used; NewClient sets one with its own transport
	// that does not follow redirects.
	HTTP *http.Client
	// Base is the URL requests go to, such as "http://127.0.0.1:8080".
	Base string
	// Prefix starts the IDs the client assigns.
	Prefix string
	// Keep records every attempt (NewClient sets it); turn it off for
	// long runs that only need counts.
	Keep bool
	// Observe, when set, is called with every attempt (from many
	// goroutines at once).
	Observe func(Attempt)

	seq      atomic.Int64
	mu       sync.Mutex
	attempts []Attempt
}

// NewClient returns a client of base with a private keep-alive transport.
func NewClient(base string) *Client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	return &Client{
		HTTP: &http.Client{
			Transport:     tr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		Base:   base,
		Prefix: "r",
		Keep:   true,
	}
}

// Close closes the client's idle connections.
func (c *Client) Close() { c.HTTP.CloseIdleConnections() }

// NextID returns a new request ID.
func (c *Client) NextID() string {
	return c.Prefix + strconv.FormatInt(c.seq.Add(1), 10)
}

// Do sends r, reads and checks the whole answer, records the attempt and
// returns it.
func (c *Client) Do(ctx context.Context, r Request) Attempt {
	a := c.do(ctx, r)
	if c.Observe != nil {
		c.Observe(a)
	}
	if c.Keep {
		c.mu.Lock()
		c.attempts = append(c.attempts, a)
		c.mu.Unlock()
	}
	return a
}

func (c *Client) do(ctx context.Context, r Request) (a Attempt) {
	if r.ID == "" {
		r.ID = c.NextID()
	}
	if r.Method == "" {
		r.Method = http.MethodGet
		if r.Body > 0 {
			r.Method = http.MethodPost
		}
	}
	if r.Path == "" {
		r.Path = "/"
	}
	q := url.Values{}
	if r.N > 0 {
		q.Set("n", strconv.FormatInt(r.N, 10))
	} else {
		q.Set("n", "0")
	}
	if r.Stream {
		q.Set("stream", "1")
	}
	rawQuery := q.Encode()
	if r.Query != "" {
		rawQuery += "&" + r.Query
	}
	a = Attempt{ID: r.ID, Method: r.Method, Start: time.Now(), Expected: r.N}
	defer func() { a.Duration = time.Since(a.Start) }()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var body io.Reader
	if r.Body > 0 {
		body = RequestBody(r.ID, r.Body)
	}
	a.SentSHA = RequestBodySHA(r.ID, r.Body)
	req, err := http.NewRequestWithContext(ctx, r.Method, c.Base+r.Path+"?"+rawQuery, body)
	if err != nil {
		a.Err = err
		return a
	}
	if r.Body > 0 {
		req.ContentLength = r.Body
	}
	for k, v := range r.Header {
		req.Header[k] = slices.Clone(v)
	}
	req.Header.Set(HeaderID, r.ID)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		a.Err = err
		a.Canceled = errors.Is(err, context.Canceled)
		return a
	}
	defer resp.Body.Close()
	a.Status = resp.StatusCode
	a.Header = resp.Header
	a.Backend = resp.Header.Get(HeaderBackend)
	a.EchoID = resp.Header.Get(HeaderID)
	a.EchoSHA = resp.Header.Get(HeaderBodySHA)
	var rd io.Reader = resp.Body
	if r.CancelAfter < 0 {
		cancel()
		a.Canceled = true
	} else if r.CancelAfter > 0 {
		rd = &cancelReader{r: resp.Body, left: r.CancelAfter, cancel: func() { a.Canceled = true; cancel() }}
	}
	if a.Backend == "" || resp.StatusCode == http.StatusSwitchingProtocols {
		_, a.Err = io.Copy(io.Discard, rd)
		return a
	}
	var err2 error
	a.Received, err2 = VerifyBody(rd, r.ID, r.N)
	switch {
	case err2 == nil:
		a.BodyOK = true
	case errors.Is(err2, ErrBodyMismatch) || errors.Is(err2, ErrShortBody):
		a.Mismatch = err2
		if a.Canceled {
			a.Err = context.Canceled
		}
	default:
		a.Err = err2
	}
	a.Trailer = resp.Trailer
	return a
}

// cancelReader cancels its request once left bytes were read.
type cancelReader struct {
	r      io.Reader
	left   int64
	cancel func()
	done   bool
}

func (c *cancelReader) Read(p []byte) (int, error) {
	if !c.done && int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if !c.done && c.left <= 0 {
		c.done = true
		c.cancel()
	}
	return n, err
}

// Attempts returns the attempts recorded so far.
func (c *Client) Attempts() []Attempt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.attempts)
}

// ResetAttempts forgets the recorded attempts.
func (c *Client) ResetAttempts() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.attempts = nil
}

// Load is a load run: Workers goroutines send requests made by Next until
// Duration has passed, Count requests were sent or the context ends.
type Load struct {
	Workers  int
	Duration time.Duration // zero: no time bound
	Count    int           // zero: no count bound
	// Next makes the i-th request (counted over all workers) of worker w.
	Next func(w, i int) Request
	// Pause between two requests of a worker.
	Pause time.Duration
}

// Run runs l against c and returns the number of requests sent.
func (c *Client) Run(ctx context.Context, l Load) int {
	if l.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.Duration)
		defer cancel()
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range l.Workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if l.Count > 0 && i >= l.Count {
					return
				}
				r := l.Next(w, i)
				// A request that the run's end cuts short is not a
				// failure of the system under test: give it its own
				// context, detached from the run's deadline.
				c.Do(context.WithoutCancel(ctx), r)
				if l.Pause > 0 {
					t := time.NewTimer(l.Pause)
					select {
					case <-t.C:
					case <-ctx.Done():
					}
					t.Stop()
				}
			}
		})
	}
	wg.Wait()
	n := int(next.Load())
	if l.Count > 0 && n > l.Count {
		n = l.Count
	}
	return n
}

// Summary counts attempts.
type Summary struct {
	Requests int
	OK       int         // 2xx from a backend, intact
	Errors   int         // no response, or a body that broke (visible)
	Canceled int         // canceled by the client
	Status   map[int]int // by status, errors excluded
	Breaches []string    // I1 breaches
}

func (s Summary) String() string {
	return fmt.Sprintf("%d requests: %d ok, %d errors, %d canceled, statuses %v, %d breaches",
		s.Requests, s.OK, s.Errors, s.Canceled, s.Status, len(s.Breaches))
}

// Summarize counts attempts and lists their I1 breaches.
func Summarize(as []Attempt) Summary {
	s := Summary{Requests: len(as), Status: make(map[int]int)}
	for i := range as {
		a := &as[i]
		switch {
		case a.Canceled:
			s.Canceled++
		case a.Err != nil:
			s.Errors++
		default:
			s.Status[a.Status]++
			if a.OK() {
				s.OK++
			}
		}
		if b := a.Breach(); b != "" {
			s.Breaches = append(s.Breaches, b)
		}
	}
	return s
}

// AtMostOnce returns the breaches of at-most-once delivery (I2) among
// the non-idempotent attempts: an ID that reached the backends more than
// once, or an attempt that got a 2xx from a backend although its ID never
// arrived exactly once.
func AtMostOnce(as []Attempt, backends ...*Backend) []string {
	hits := make(map[string]int)
	for _, b := range backends {
		for id, n := range b.HitMap() {
			hits[id] += n
		}
	}
	var out []string
	for i := range as {
		a := &as[i]
		if a.Idempotent() {
			continue
		}
		n := hits[a.ID]
		switch {
		case n > 1:
			out = append(out, fmt.Sprintf("%s %s reached backends %d times", a.Method, a.ID, n))
		case a.Err == nil && a.Backend != "" && a.Status/100 == 2 && n != 1:
			out = append(out, fmt.Sprintf("%s %s answered by %s but arrived %d times", a.Method, a.ID, a.Backend, n))
		}
	}
	return out
}
