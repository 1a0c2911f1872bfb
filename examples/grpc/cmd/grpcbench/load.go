package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// loadConfig is what the load mode does.
type loadConfig struct {
	addrs   []string      // connection i goes to addrs[i % len(addrs)]
	workers int           // concurrent callers; caller w uses connection w % conns
	dur     time.Duration // callers start calls until then
	conns   int           // grpc.ClientConns, each one HTTP/2 connection
	size    int           // bytes of each request's payload
	stream  int           // 0: unary Hello; n > 0: Count(n), reading n messages
}

// callTimeout bounds one call, so that a stuck proxy ends the run.
const callTimeout = 10 * time.Second

func (c loadConfig) validate() error {
	switch {
	case len(c.addrs) == 0:
		return errors.New("-load needs an address")
	case c.workers < 1, c.conns < 1, c.dur <= 0, c.size < 0:
		return errors.New("-c and -conns must be at least 1, -d positive, -size not negative")
	case c.stream < 0 || c.stream > maxCount:
		return fmt.Errorf("-stream must be from 0 to %d", maxCount)
	}
	return nil
}

// runLoad dials the connections, makes every one of them ready with a
// first call (not counted), then runs the callers for c.dur and returns
// what they counted. Calls in flight at the end finish and count.
func runLoad(ctx context.Context, c loadConfig) (result, error) {
	if err := c.validate(); err != nil {
		return result{}, err
	}
	conns := make([]*grpc.ClientConn, c.conns)
	defer func() {
		for _, cc := range conns {
			if cc != nil {
				cc.Close()
			}
		}
	}()
	payload := strings.Repeat("x", c.size)
	for i := range conns {
		cc, err := grpc.NewClient("passthrough:///"+c.addrs[i%len(c.addrs)], grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return result{}, err
		}
		conns[i] = cc
		if err := call(ctx, cc, c, payload); err != nil {
			return result{}, fmt.Errorf("first call on connection %d (%s): %w", i, cc.Target(), err)
		}
	}

	samples := make([][]uint32, c.workers)
	errs := make([]int, c.workers)
	firstErrs := make([]error, c.workers)
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(c.dur)
	for w := range c.workers {
		wg.Go(func() {
			cc := conns[w%len(conns)]
			lat := make([]uint32, 0, 1<<14)
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(end) {
					break
				}
				err := call(ctx, cc, c, payload)
				if err != nil {
					errs[w]++
					if firstErrs[w] == nil {
						firstErrs[w] = err
					}
					continue
				}
				lat = append(lat, micros(time.Since(t0)))
			}
			samples[w] = lat
		})
	}
	wg.Wait()
	res := summarize(samples, time.Since(start))
	for w := range errs {
		res.errors += errs[w]
		if res.firstErr == nil {
			res.firstErr = firstErrs[w]
		}
	}
	return res, ctx.Err()
}

// call makes one call: a unary Hello, or a Count stream read to its end.
func call(ctx context.Context, cc *grpc.ClientConn, c loadConfig, payload string) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if c.stream == 0 {
		return cc.Invoke(ctx, helloMethod, wrapperspb.String(payload), new(wrapperspb.StringValue))
	}
	s, err := cc.NewStream(ctx, &countDesc, countMethod)
	if err != nil {
		return err
	}
	if err := s.SendMsg(wrapperspb.String(strconv.Itoa(c.stream))); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	n := 0
	for {
		err := s.RecvMsg(new(wrapperspb.StringValue))
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		n++
	}
	if n != c.stream {
		return fmt.Errorf("stream of %d messages, not %d", n, c.stream)
	}
	return nil
}

// micros is d in whole microseconds, saturated to fit a uint32.
func micros(d time.Duration) uint32 {
	us := d.Microseconds()
	if us > int64(^uint32(0)) {
		return ^uint32(0)
	}
	if us < 0 {
		return 0
	}
	return uint32(us)
}
