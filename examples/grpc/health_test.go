package main

import (
	"context"
	"net"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
	"google.golang.org/grpc"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// testBackend starts a grpc-go backend for the test, stopped by its
// cleanup, which also closes the connections of the default health check
// transports.
func testBackend(t *testing.T, name string, withHealth bool) *backend {
	t.Helper()
	b, err := startBackend(name, withHealth)
	require.NoError(t, err)
	t.Cleanup(func() {
		assert.NoError(t, b.stop())
		health.GRPCCheck{}.CloseIdleConnections()
	})
	return b
}

func targetOf(t *testing.T, b *backend) *url.URL {
	t.Helper()
	u, err := url.Parse(b.url)
	require.NoError(t, err)
	return u
}

// health.GRPCCheck against grpc-go's own health server: SERVING passes;
// NOT_SERVING, a service the server does not know, a shut-down health
// service and a server without one fail, each saying why.
func TestGRPCCheckAgainstGRPCGo(t *testing.T) {
	b := testBackend(t, "a", true)
	target := targetOf(t, b)
	check := func(service string) error {
		return health.GRPCCheck{Service: service}.Check(context.Background(), target)
	}

	assert.NoError(t, check(""), "the server as a whole")
	assert.NoError(t, check(echoService), "the Echo service")

	b.health.SetServingStatus(echoService, healthpb.HealthCheckResponse_NOT_SERVING)
	assert.EqualError(t, check(echoService), `health: grpc `+b.url+` service "tinylb.example.Echo": serving status NOT_SERVING`)
	assert.NoError(t, check(""), "the server as a whole is still SERVING")

	assert.EqualError(t, check("no.such.Service"), `health: grpc `+b.url+` service "no.such.Service": grpc-status NOT_FOUND (5): "unknown service"`)

	b.health.Shutdown() // what a server does as it begins to stop
	assert.ErrorContains(t, check(""), "serving status NOT_SERVING")
	b.health.Resume()
	assert.NoError(t, check(""))

	bare := testBackend(t, "bare", false)
	err := health.GRPCCheck{}.Check(context.Background(), targetOf(t, bare))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "grpc-status UNIMPLEMENTED (12)", "no health service")
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	accepted atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// Checks of one backend reuse one HTTP/2 connection to it.
func TestGRPCCheckReusesConnectionToGRPCGo(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cl := &countingListener{Listener: ln}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, grpchealth.NewServer())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(cl) }()
	c := health.GRPCCheck{Interval: time.Minute}
	t.Cleanup(func() {
		srv.Stop()
		assert.NoError(t, <-served)
		c.CloseIdleConnections()
	})

	target := &url.URL{Scheme: "http", Host: ln.Addr().String()}
	for range 10 {
		require.NoError(t, c.Check(context.Background(), target))
	}
	assert.Equal(t, int32(1), cl.accepted.Load(), "connections for 10 checks")
}

// End to end: a balancer checking three grpc-go backends with
// health.GRPCCheck takes out the one set NOT_SERVING, sends it no calls
// while it is out, and takes it back when it is SERVING again.
func TestBalancerEjectsNotServingBackend(t *testing.T) {
	f, bs := testFront(t)
	client := testClient(t, f)
	ctx := context.Background()
	b := bs[1]

	for _, be := range bs {
		assert.Equal(t, lb.StateUp, stateOf(f.bal, be.url), "%s at the start", be.name)
	}
	b.setServing(false)
	require.NoError(t, waitState(ctx, f.bal, b.url, lb.StateDown))
	assert.Contains(t, lastCheckError(f.bal, b.url), "serving status NOT_SERVING")
	for _, be := range []*backend{bs[0], bs[2]} {
		assert.Equal(t, lb.StateUp, stateOf(f.bal, be.url), "%s while b is out", be.name)
	}
	got := callers(t, client, 6)
	assert.Equal(t, map[string]int{"a": 3, "c": 3}, got, "calls while b is out")

	b.setServing(true)
	require.NoError(t, waitState(ctx, f.bal, b.url, lb.StateUp))
	assert.Empty(t, lastCheckError(f.bal, b.url))
	got = callers(t, client, 6)
	assert.Equal(t, map[string]int{"a": 2, "b": 2, "c": 2}, got, "calls once b is back")
}

// lb.New validates a GRPCCheck as it does an HTTPCheck: an impossible
// setting panics, naming its field.
func TestBalancerValidatesGRPCCheck(t *testing.T) {
	b, err := lb.NewBackend("http://127.0.0.1:1")
	require.NoError(t, err)
	pool, err := lb.NewPool(b)
	require.NoError(t, err)
	assert.PanicsWithValue(t, "health: negative Interval -1s", func() {
		lb.New(pool, lb.RoundRobin(), lb.WithHealthCheck(health.GRPCCheck{Interval: -time.Second}))
	})
	assert.PanicsWithValue(t, `health: reserved Header "Grpc-Timeout": the check sets it, or HTTP/2 forbids it`, func() {
		lb.New(pool, lb.RoundRobin(), lb.WithHealthCheck(&health.GRPCCheck{Header: map[string][]string{"Grpc-Timeout": {"1S"}}}))
	})
}

// With StartDown, a backend without the health service never comes up
// (its checks get UNIMPLEMENTED), while one with it does.
func TestBalancerKeepsOutServerWithoutHealthService(t *testing.T) {
	withHealth := testBackend(t, "a", true)
	bare := testBackend(t, "bare", false)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	check := demoCheck
	check.StartDown = true
	f, err := startFront(ln, backends{withHealth, bare}, check)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, f.close()) })

	require.NoError(t, waitState(context.Background(), f.bal, withHealth.url, lb.StateUp))
	assert.Eventually(t, func() bool { return lastCheckError(f.bal, bare.url) != "" }, 10*time.Second, 10*time.Millisecond, "bare is checked")
	assert.Equal(t, lb.StateDown, stateOf(f.bal, bare.url))
	assert.Contains(t, lastCheckError(f.bal, bare.url), "grpc-status UNIMPLEMENTED (12)")
	assert.Equal(t, map[string]int{"a": 4}, callers(t, testClient(t, f), 4), "every call goes to a")
}
