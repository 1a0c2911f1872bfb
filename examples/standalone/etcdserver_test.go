package main

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
)

// etcdServer is an embedded single-member etcd on 127.0.0.1 with free
// ports and a t.TempDir data directory, closed when the test ends, and a
// client of it for the test's writes. (discovery/etcd's tests have a
// restartable one; these tests need no restart.)
type etcdServer struct {
	endpoint string // host:port of the client URL
	client   *clientv3.Client
}

func localPort(t *testing.T) url.URL {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
}

func startEtcd(t *testing.T) *etcdServer {
	t.Helper()
	client, peer := localPort(t), localPort(t)
	cfg := embed.NewConfig()
	cfg.Name = "tinylb-standalone-test"
	cfg.Dir = t.TempDir()
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.UnsafeNoFsync = true
	cfg.BcryptCost = 4 // bcrypt.MinCost: a login takes milliseconds, not most of a second under -race
	// A tenth of the default tick and election timeout: the single
	// member elects itself sooner.
	cfg.TickMs = 10
	cfg.ElectionMs = 100
	e, err := embed.StartEtcd(cfg)
	require.NoError(t, err)
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("embedded etcd not ready after 30 s")
	}
	s := &etcdServer{endpoint: client.Host}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{s.endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	s.client = c
	return s
}

func (s *etcdServer) put(t *testing.T, key, val string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := s.client.Put(ctx, key, val)
	require.NoError(t, err)
}

func (s *etcdServer) del(t *testing.T, key string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := s.client.Delete(ctx, key)
	require.NoError(t, err)
}

// enableAuth turns on etcd's authentication with a root user of
// password; the test's own client is replaced by one that logs in.
func (s *etcdServer) enableAuth(t *testing.T, password string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := s.client.RoleAdd(ctx, "root")
	require.NoError(t, err)
	_, err = s.client.UserAdd(ctx, "root", password)
	require.NoError(t, err)
	_, err = s.client.UserGrantRole(ctx, "root", "root")
	require.NoError(t, err)
	_, err = s.client.AuthEnable(ctx)
	require.NoError(t, err)
	authed, err := clientv3.New(clientv3.Config{
		Endpoints: []string{s.endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		Username: "root", Password: password,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = authed.Close() })
	s.client = authed
}
