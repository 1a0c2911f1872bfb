package health_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/tinylb/lb/health"
)

// maintenance is a Checker that fails while a flag file exists and
// otherwise asks the Checker it wraps: an operator takes a backend out of
// rotation by creating the file.
type maintenance struct {
	flag string
	next health.Checker
}

func (m maintenance) Check(ctx context.Context, target *url.URL) error {
	if _, err := os.Stat(m.flag); err == nil {
		return errors.New("in maintenance")
	}
	return m.next.Check(ctx, target)
}

func ExampleChecker() {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	}))
	defer backend.Close()
	target, _ := url.Parse(backend.URL)

	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	flag := filepath.Join(dir, "maintenance")
	check := maintenance{flag: flag, next: &health.HTTPCheck{Path: "/", Body: "ok"}}
	s := health.Schedule{Interval: 50 * time.Millisecond, Rise: 2, Fall: 2, Jitter: -1, StartDown: true}

	// Run blocks until ctx ends, so it gets a goroutine, which we wait for.
	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan health.Report)
	done := make(chan struct{})
	go func() {
		defer close(done)
		health.Run(ctx, check, target, s, func(r health.Report) {
			if r.Changed {
				select {
				case changes <- r:
				case <-ctx.Done():
				}
			}
		})
	}()
	show := func(r health.Report) {
		if r.Up {
			fmt.Printf("up after %d passed checks\n", r.Passes)
		} else {
			fmt.Printf("down after %d failed checks: %v\n", r.Fails, r.Err)
		}
	}

	show(<-changes) // StartDown: the first passed check brings it up
	os.WriteFile(flag, nil, 0o644)
	show(<-changes) // Fall 2
	os.Remove(flag)
	show(<-changes) // Rise 2
	cancel()
	<-done

	// Output:
	// up after 1 passed checks
	// down after 2 failed checks: in maintenance
	// up after 2 passed checks
}
