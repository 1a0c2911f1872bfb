// Command openloop drives an HTTP target at a fixed request rate and
// reports latency percentiles: the "p99 at equal load" that wrk's closed
// loop cannot give, since wrk runs every proxy at its own saturation.
//
// Requests are scheduled every 1/rate seconds whatever happens to earlier
// ones (open loop), and are sent by at most -conns connections. Each
// latency is measured from the request's scheduled time, not from when a
// connection became free, so a stall shows up in the percentiles instead
// of silently lowering the rate (coordinated omission, as wrk2 corrects
// it). The achieved rate is printed: if it falls short of -rate, the
// target (or this generator) was saturated and the percentiles are not at
// equal load.
//
//	openloop -url http://127.0.0.1:18090/ -rate 10000 -duration 10s -conns 64
//	openloop -url ... -body 65536      # POST a 64 KiB body
//
// Output is one tab-separated line: rate, achieved rate, requests, errors,
// p50, p90, p99, p99.9 and max in microseconds.
//
// With -serve, openloop also plays the backends (the shared harness's
// backend: -serve-size bytes, or "hello from bN", after -serve-delay,
// request bodies drained) on the listed addresses, and with -control it
// stays up and runs one measurement per GET /run?url=&rate=&duration=&
// conns=&body= on that address, answering with the result line. One
// process for the load and the backends, on one core, leaves the kernel
// nothing to share that core out between: the latency it measures is the
// target's and the Go scheduler's, not a time slice lost to a neighbour.
//
//	openloop -serve 127.0.0.1:18081,127.0.0.1:18082 -control 127.0.0.1:18099
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	target := flag.String("url", "", "`URL` to send requests to")
	rate := flag.Float64("rate", 1000, "requests per second")
	duration := flag.Duration("duration", 10*time.Second, "how long to measure")
	warmup := flag.Duration("warmup", 2*time.Second, "how long to send before measuring")
	conns := flag.Int("conns", 64, "connections (and requests in flight) at most")
	body := flag.Int("body", 0, "POST a body of this many bytes (0: GET)")
	header := flag.Bool("header", false, "print the column names first")
	serve := flag.String("serve", "", "comma-separated `addresses` to serve as backends")
	serveSize := flag.Int("serve-size", 0, "backend answer size in bytes (0: \"hello from bN\\n\")")
	serveDelay := flag.Duration("serve-delay", 0, "backend latency per request")
	control := flag.String("control", "", "`address` to take GET /run requests on; openloop then runs until killed")
	flag.Parse()
	if *serve != "" {
		for i, addr := range strings.Split(*serve, ",") {
			if err := serveBackend(addr, fmt.Sprint("b", i+1), *serveSize, *serveDelay); err != nil {
				fmt.Fprintln(os.Stderr, "openloop:", err)
				os.Exit(1)
			}
		}
	}
	if *control != "" {
		fmt.Fprintln(os.Stderr, "openloop:", serveControl(*control))
		os.Exit(1)
	}
	if *target == "" || *rate <= 0 || *conns <= 0 || *duration <= 0 {
		fmt.Fprintln(os.Stderr, "openloop: -url, a positive -rate, -conns and -duration are required")
		os.Exit(2)
	}
	res, err := run(*target, *rate, *warmup, *duration, *conns, *body)
	if err != nil {
		fmt.Fprintln(os.Stderr, "openloop:", err)
		os.Exit(1)
	}
	if *header {
		fmt.Println("rate\tachieved\treqs\terrors\tp50_us\tp90_us\tp99_us\tp999_us\tmax_us")
	}
	fmt.Println(res)
}

type result struct {
	rate, achieved           float64
	reqs, errors             int
	p50, p90, p99, p999, max time.Duration
}

func (r result) String() string {
	us := func(d time.Duration) int64 { return d.Microseconds() }
	return fmt.Sprintf("%.0f\t%.0f\t%d\t%d\t%d\t%d\t%d\t%d\t%d", r.rate, r.achieved, r.reqs, r.errors,
		us(r.p50), us(r.p90), us(r.p99), us(r.p999), us(r.max))
}

func run(target string, rate float64, warmup, duration time.Duration, conns, bodySize int) (result, error) {
	tr := &http.Transport{
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	payload := bytes.Repeat([]byte("x"), bodySize)

	interval := time.Duration(float64(time.Second) / rate)
	total := int((warmup + duration).Seconds() * rate)
	start := time.Now().Add(50 * time.Millisecond)
	measureFrom := start.Add(warmup)

	// The schedule: request i is due at start + i*interval. Workers take
	// the next due request as soon as they are free, so a slow answer
	// delays the requests behind it, and their latency shows it.
	var next atomic.Int64
	lat := make([]time.Duration, total)
	done := make([]bool, total)
	var errs atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(warmup+duration+30*time.Second))
	defer cancel()
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= total || ctx.Err() != nil {
					return
				}
				due := start.Add(time.Duration(i) * interval)
				if d := time.Until(due); d > 0 {
					time.Sleep(d)
				}
				if err := send(ctx, client, target, payload); err != nil {
					errs.Add(1)
					continue
				}
				lat[i] = time.Since(due)
				done[i] = true
			}
		}()
	}
	wg.Wait()
	end := time.Now()

	var sample []time.Duration
	first := int(warmup.Seconds() * rate)
	for i := first; i < total; i++ {
		if done[i] {
			sample = append(sample, lat[i])
		}
	}
	if len(sample) == 0 {
		return result{}, fmt.Errorf("no request succeeded (%d errors)", errs.Load())
	}
	slices.Sort(sample)
	q := func(p float64) time.Duration { return sample[min(len(sample)-1, int(p*float64(len(sample))))] }
	return result{
		rate:     rate,
		achieved: float64(total-first) / end.Sub(measureFrom).Seconds(),
		reqs:     len(sample),
		errors:   int(errs.Load()),
		p50:      q(0.50), p90: q(0.90), p99: q(0.99), p999: q(0.999), max: sample[len(sample)-1],
	}, nil
}

func send(ctx context.Context, c *http.Client, target string, payload []byte) error {
	method := http.MethodGet
	var body io.Reader
	if len(payload) > 0 {
		method, body = http.MethodPost, bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return err
}

// serveBackend answers every request on addr as the shared harness's
// backend does: 200, its body, after delay; request bodies are drained.
func serveBackend(addr, name string, size int, delay time.Duration) error {
	body := []byte("hello from " + name + "\n")
	if size > 0 {
		body = bytes.Repeat([]byte("x"), size)
		body[len(body)-1] = '\n'
	}
	clen := strconv.Itoa(len(body))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			if delay > 0 {
				time.Sleep(delay)
			}
			h := w.Header()
			h["Content-Type"] = []string{"text/plain"}
			h["Content-Length"] = []string{clen}
			w.Write(body)
		}),
	}
	go srv.Serve(ln)
	return nil
}

// serveControl runs one measurement per GET /run and answers with its
// result line; it returns only if it cannot listen.
func serveControl(addr string) error {
	var mu sync.Mutex // one measurement at a time
	return http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		rate, err1 := strconv.ParseFloat(q.Get("rate"), 64)
		dur, err2 := time.ParseDuration(q.Get("duration"))
		warm, err3 := time.ParseDuration(q.Get("warmup"))
		conns, err4 := strconv.Atoi(q.Get("conns"))
		body, err5 := strconv.Atoi(q.Get("body"))
		if err := errors.Join(err1, err2, err3, err4, err5); err != nil || q.Get("url") == "" || rate <= 0 || conns <= 0 || dur <= 0 {
			http.Error(w, fmt.Sprintf("want url, rate, duration, warmup, conns, body: %v", err), http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		res, err := run(q.Get("url"), rate, warm, dur, conns, body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		fmt.Fprintln(w, res)
	}))
}
