package lb_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tinylb/lb"
	"github.com/tinylb/lb/internal/testcert"
)

// The balancer on an HTTP/2 front, served as the README's "HTTP/2 and TLS
// on the front" shows: h2c with http.Server.Protocols, h2 with ServeTLS.
// The backends speak HTTP/1.1 either way.

// frontBalancer is a balancer over one backend that answers the request's
// X-Forwarded-Proto and the body it got.
func frontBalancer(t *testing.T) *lb.Balancer {
	t.Helper()
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s", r.Header.Get("X-Forwarded-Proto"), body)
	}))
	t.Cleanup(be.Close)
	b, err := lb.NewBackend(be.URL)
	require.NoError(t, err)
	pool, err := lb.NewPool(b)
	require.NoError(t, err)
	bal := lb.New(pool, lb.RoundRobin())
	t.Cleanup(func() { bal.Close() })
	return bal
}

// frontServe runs srv on 127.0.0.1 with serve until the test ends and
// returns its address.
func frontServe(t *testing.T, srv *http.Server, serve func(net.Listener) error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// frontClient returns a client of the given protocols that trusts pool.
func frontClient(t *testing.T, pool *x509.CertPool, set ...func(*http.Protocols, bool)) *http.Client {
	t.Helper()
	p := new(http.Protocols)
	for _, f := range set {
		f(p, true)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, Protocols: p}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// frontPost posts body to url and returns the protocol and body of the
// answer.
func frontPost(t *testing.T, c *http.Client, url, body string) (int, string) {
	t.Helper()
	resp, err := c.Post(url, "text/plain", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", got)
	return resp.ProtoMajor, string(got)
}

func TestFrontH2C(t *testing.T) {
	srv := &http.Server{Handler: frontBalancer(t), ReadHeaderTimeout: 10 * time.Second}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	url := "http://" + frontServe(t, srv, srv.Serve) + "/x"

	proto, body := frontPost(t, frontClient(t, nil, (*http.Protocols).SetUnencryptedHTTP2), url, "h2c")
	assert.Equal(t, 2, proto)
	assert.Equal(t, "http h2c", body)
	proto, body = frontPost(t, frontClient(t, nil, (*http.Protocols).SetHTTP1), url, "h1")
	assert.Equal(t, 1, proto)
	assert.Equal(t, "http h1", body)
}

func TestFrontH2TLS(t *testing.T) {
	certFile, keyFile, pool := frontCert(t)
	srv := &http.Server{Handler: frontBalancer(t), ReadHeaderTimeout: 10 * time.Second}
	url := "https://" + frontServe(t, srv, func(ln net.Listener) error { return srv.ServeTLS(ln, certFile, keyFile) }) + "/x"

	proto, body := frontPost(t, frontClient(t, pool, (*http.Protocols).SetHTTP1, (*http.Protocols).SetHTTP2), url, "h2")
	assert.Equal(t, 2, proto)
	assert.Equal(t, "https h2", body)
	proto, body = frontPost(t, frontClient(t, pool, (*http.Protocols).SetHTTP1), url, "h1")
	assert.Equal(t, 1, proto)
	assert.Equal(t, "https h1", body)
}

// frontCert writes a self-signed certificate for 127.0.0.1 and its key to
// the test's directory.
func frontCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	c := testcert.Write(t, t.TempDir())
	return c.CertFile, c.KeyFile, c.Pool
}
