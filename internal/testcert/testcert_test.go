package testcert

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A server with the written pair is trusted by a client with the pool, for
// 127.0.0.1, and a second Write replaces the pair.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	c := Write(t, dir)
	pair, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	require.NoError(t, err)

	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.StartTLS()
	defer srv.Close()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.Pool}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	c2 := Write(t, dir)
	assert.Equal(t, c.CertFile, c2.CertFile)
	assert.NotEqual(t, c.Leaf.SerialNumber, c2.Leaf.SerialNumber, "a new certificate")
}
