package etcd_test

import (
	"context"
	"net"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// server is an embedded single-member etcd on 127.0.0.1. It can be closed
// and started again on the same ports and data directory, which is what a
// restarted etcd looks like to its clients.
type server struct {
	t         testing.TB
	dir       string
	clientURL url.URL
	peerURL   url.URL
	e         *embed.Etcd
}

// freePort asks the kernel for a free port on 127.0.0.1 and releases it.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return port
}

func localURL(port int) url.URL {
	return url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
}

func startServer(t testing.TB) *server {
	t.Helper()
	s := &server{
		t:         t,
		dir:       t.TempDir(),
		clientURL: localURL(freePort(t)),
		peerURL:   localURL(freePort(t)),
	}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *server) start() {
	s.t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "tinylb-test"
	cfg.Dir = s.dir
	cfg.ListenClientUrls = []url.URL{s.clientURL}
	cfg.AdvertiseClientUrls = []url.URL{s.clientURL}
	cfg.ListenPeerUrls = []url.URL{s.peerURL}
	cfg.AdvertisePeerUrls = []url.URL{s.peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.UnsafeNoFsync = true
	// A tenth of the default tick and election timeout: a single member
	// elects itself sooner, so the server is ready sooner after each start.
	cfg.TickMs = 10
	cfg.ElectionMs = 100
	e, err := embed.StartEtcd(cfg)
	require.NoError(s.t, err)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		s.t.Fatal("embedded etcd not ready after 30 s")
	}
	s.e = e
}

func (s *server) stop() {
	if s.e != nil {
		s.e.Close()
		s.e = nil
	}
}

func (s *server) endpoint() string { return s.clientURL.Host }

// newClient returns a client of endpoint, closed when the test ends. Its
// connection backoff is short, so that a test waits milliseconds, not
// gRPC's default seconds, for it to reconnect.
func newClient(t testing.TB, endpoint string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, MaxDelay: 200 * time.Millisecond},
			MinConnectTimeout: time.Second,
		})},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// put writes key; it returns the revision of the write.
func put(t testing.TB, c *clientv3.Client, key, val string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Put(ctx, key, val)
	require.NoError(t, err)
	return resp.Header.Revision
}

// del deletes key; it returns the revision of the delete.
func del(t testing.TB, c *clientv3.Client, key string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Delete(ctx, key)
	require.NoError(t, err)
	return resp.Header.Revision
}

func itoa(i int) string { return strconv.Itoa(i) }
