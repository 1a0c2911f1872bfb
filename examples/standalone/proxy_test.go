package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// When one server fails on its own, run shuts the other down and returns
// the failure: the servers and the control path share one errgroup.
func TestServerFailureStopsTheOthers(t *testing.T) {
	a := backend(t, "a", 0)
	path := writeConfig(t, `{"listen": "127.0.0.1:0", "backends": [{"url": "`+a.URL+`"}], "status": {"listen": "127.0.0.1:0"}}`)
	cfg, err := load([]string{"-config", path})
	require.NoError(t, err)
	ready := make(chan *proxy, 1)
	done := make(chan error, 1)
	env := runEnv{log: slog.New(slog.DiscardHandler), ready: func(p *proxy) { ready <- p }}
	go func() { done <- run(context.Background(), cfg, env) }()
	var p *proxy
	select {
	case p = <-ready:
	case err := <-done:
		t.Fatalf("run: %v", err)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	status, body := get(t, client, http.MethodGet, "http://"+p.Addr().String())
	require.Equal(t, http.StatusOK, status, body)

	// The status page's listener fails under its server.
	statusAddr := p.StatusAddr().String()
	require.NoError(t, p.statusLn.Close())
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return within 10s of the status server's failure")
	}
	require.Error(t, err)
	assert.ErrorIs(t, err, net.ErrClosed)
	assert.Contains(t, err.Error(), "status page: serving on "+statusAddr)
	// The proxy's own listener was shut down too.
	_, _, err = do(client, http.MethodGet, "http://"+p.Addr().String())
	assert.Error(t, err, "the proxy still answers after run returned")
}
