package etcd_test

import (
	"context"
	"log"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/discovery"
	"github.com/tinylb/lb/discovery/etcd"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// A balancer whose backends are the keys under /services/api/ in etcd,
// written for instance with
//
//	etcdctl put /services/api/1 http://10.0.0.1:8080
//	etcdctl put /services/api/2 '{"url": "http://10.0.0.2:8080", "weight": 2}'
//
// It needs an etcd at 127.0.0.1:2379, so it is compiled but not run.
func Example() {
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{"127.0.0.1:2379"},
		DialTimeout: 5 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	pool, err := lb.NewPool()
	if err != nil {
		log.Fatal(err)
	}
	bal := lb.New(pool, lb.RoundRobin())
	defer bal.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	src := etcd.New(client, "/services/api/", etcd.WithLogger(slog.Default()))
	done := make(chan error, 1)
	go func() {
		done <- src.Run(ctx, func(set []discovery.Target, err error) {
			if err != nil {
				slog.Warn("discovery", "error", err) // the pool keeps its backends
				return
			}
			var backends []*lb.Backend
			for _, t := range set {
				var opts []lb.BackendOption
				if t.Weight > 0 {
					opts = append(opts, lb.WithWeight(t.Weight))
				}
				if t.Backup {
					opts = append(opts, lb.AsBackup())
				}
				if b, err := lb.NewBackend(t.URL, opts...); err == nil {
					backends = append(backends, b)
				}
			}
			if err := pool.Update(backends...); err != nil {
				slog.Warn("discovery", "error", err)
			}
		})
	}()

	srv := &http.Server{Addr: "127.0.0.1:8080", Handler: bal}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		log.Print(err)
	}
	stop() // ends Run too, if the server failed on its own
	if err := <-done; err != nil {
		log.Print(err)
	}
}
