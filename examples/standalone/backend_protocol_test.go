package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// backend_protocol reaches the balancer: with http2-grpc a gRPC call goes
// to the backend over h2c and a plain request over HTTP/1.1; with http2
// both go over h2c; by default neither does.
func TestProxyBackendProtocol(t *testing.T) {
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	}))
	be.Config.Protocols = protos
	be.Start()
	t.Cleanup(be.Close)
	client := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	for _, c := range []struct{ setting, plain, grpc string }{
		{"", "HTTP/1.1", "HTTP/1.1"},
		{`, "backend_protocol": "http1"`, "HTTP/1.1", "HTTP/1.1"},
		{`, "backend_protocol": "http2-grpc"`, "HTTP/1.1", "HTTP/2.0"},
		{`, "backend_protocol": "http2"`, "HTTP/2.0", "HTTP/2.0"},
	} {
		url := start(t, "-config", writeConfig(t, `{"backends": [{"url": "`+be.URL+`"}]`+c.setting+`}`)).url
		status, body := get(t, client, http.MethodGet, url)
		require.Equal(t, http.StatusOK, status, body)
		assert.Equal(t, c.plain, body, "a plain GET with %s", c.setting)

		req, err := http.NewRequest(http.MethodPost, url+"/pkg.Service/Call", io.MultiReader(strings.NewReader("msg")))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/grpc")
		resp, err := client.Do(req)
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, c.grpc, string(b), "a gRPC call with %s", c.setting)
	}
}
