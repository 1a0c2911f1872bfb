package discovery_test

import (
	"context"
	"fmt"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/discovery"
)

// A watcher keeps a balancer's pool in step with a source: here a
// SourceFunc that reports one set, as a registry client would on each
// change. With DNS, the source would be discovery.SRV("http", "tcp",
// "api.internal") or discovery.DNS("api.internal", 8080).
func ExampleWatch() {
	src := discovery.SourceFunc(func(ctx context.Context, push func([]discovery.Target, error)) error {
		push([]discovery.Target{
			{URL: "http://10.0.0.1:8080", Weight: 3},
			{URL: "http://10.0.0.2:8080"},
			{URL: "http://10.0.0.9:8080", Backup: true},
		}, nil)
		<-ctx.Done()
		return ctx.Err()
	})
	pool := &lb.Pool{}
	bal := lb.New(pool, lb.SmoothWeighted())
	defer bal.Close()

	w := discovery.Watch(context.Background(), src, pool)
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.WaitReady(ctx); err != nil {
		fmt.Println("no backends yet:", err)
		return
	}
	for _, b := range pool.Backends() {
		fmt.Println(b, b.Weight(), b.Backup())
	}
	fmt.Println(w.Stats().Updates, "update")
	// Output:
	// http://10.0.0.1:8080 3 false
	// http://10.0.0.2:8080 1 false
	// http://10.0.0.9:8080 1 true
	// 1 update
}
