package main

import (
	"bufio"
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

// testCert is a self-signed certificate for 127.0.0.1, made for the
// test and written to its directory.
type testCert struct {
	cert, key string         // the PEM files
	pool      *x509.CertPool // trusts it
	leaf      *x509.Certificate
}

// newTestCert makes a certificate and writes it to the files cert.pem and
// key.pem in dir (replacing them).
func newTestCert(t *testing.T, dir string) testCert {
	t.Helper()
	c := testcert.Write(t, dir)
	return testCert{cert: c.CertFile, key: c.KeyFile, pool: c.Pool, leaf: c.Leaf}
}

// protoBackend is a test backend that answers with the X-Forwarded-Proto
// the balancer set and the body it got, as "proto body".
func protoBackend(t *testing.T) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s", r.Header.Get("X-Forwarded-Proto"), body)
	}))
	t.Cleanup(s.Close)
	return s
}

// client returns an HTTP client of the given protocols, trusting pool
// (nil: the system's), whose connections are closed when the test ends.
func client(t *testing.T, pool *x509.CertPool, protocols ...func(*http.Protocols, bool)) *http.Client {
	t.Helper()
	p := new(http.Protocols)
	for _, set := range protocols {
		set(p, true)
	}
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2: true,
		Protocols:         p,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

var (
	http1 = (*http.Protocols).SetHTTP1
	h2    = (*http.Protocols).SetHTTP2
	h2c   = (*http.Protocols).SetUnencryptedHTTP2
)

// post sends a POST with body and returns the response and its body.
func post(t *testing.T, c *http.Client, url, body string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Post(url, "text/plain", strings.NewReader(body))
	require.NoError(t, err, "POST %s", url)
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(got)
}

// With a certificate, the listener speaks TLS and offers h2 and http/1.1
// by ALPN: an HTTP/2 client gets HTTP/2 through to the backend, an
// HTTP/1.1 client HTTP/1.1, and the backend hears https either way.
func TestFrontTLSServesH2AndHTTP1(t *testing.T) {
	cert := newTestCert(t, t.TempDir())
	r := start(t, "-tls-cert", cert.cert, "-tls-key", cert.key, "-backend", protoBackend(t).URL)
	url := "https://" + r.p.Addr().String() + "/x"

	resp, body := post(t, client(t, cert.pool, http1, h2), url, "over h2")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, 2, resp.ProtoMajor, "an HTTP/2 client's protocol")
	assert.Equal(t, "h2", resp.TLS.NegotiatedProtocol)
	assert.Equal(t, "https over h2", body)

	resp, body = post(t, client(t, cert.pool, http1), url, "over http/1.1")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, 1, resp.ProtoMajor, "an HTTP/1.1 client's protocol")
	assert.NotEqual(t, "h2", resp.TLS.NegotiatedProtocol) // this client offers no ALPN
	assert.Equal(t, "https over http/1.1", body)

	// Plain HTTP on the TLS port gets net/http's 400, not the backend.
	resp, body = post(t, client(t, nil, http1), "http://"+r.p.Addr().String()+"/x", "plain")
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Contains(t, body, "HTTP request to an HTTPS server")

	assert.Len(t, r.logs.lines("tinylb listening", `protocols="[h2 http/1.1]"`, "tls_cert_expires="+cert.leaf.NotAfter.UTC().Format(time.RFC3339)), 1)
}

// With h2c, the listener speaks HTTP/2 in the clear (prior knowledge)
// and HTTP/1.1 side by side.
func TestFrontH2CServesH2AndHTTP1(t *testing.T) {
	r := start(t, "-h2c", "-backend", protoBackend(t).URL)

	resp, body := post(t, client(t, nil, h2c), r.url+"/x", "over h2c")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, 2, resp.ProtoMajor, "an h2c client's protocol")
	assert.Nil(t, resp.TLS)
	assert.Equal(t, "http over h2c", body)

	resp, body = post(t, client(t, nil, http1), r.url+"/x", "over http/1.1")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, 1, resp.ProtoMajor, "an HTTP/1.1 client's protocol")
	assert.Equal(t, "http over http/1.1", body)

	assert.Len(t, r.logs.lines("tinylb listening", `protocols="[h2c http/1.1]"`), 1)
}

// Without tls or h2c the listener speaks HTTP/1.1 only: an h2c client
// with prior knowledge gets no HTTP/2 connection.
func TestFrontPlainIsHTTP1Only(t *testing.T) {
	r := start(t, "-backend", protoBackend(t).URL)

	resp, body := post(t, client(t, nil, http1), r.url+"/x", "plain")
	assert.Equal(t, 1, resp.ProtoMajor)
	assert.Equal(t, "http plain", body)

	c := client(t, nil, h2c)
	resp, err := c.Get(r.url + "/x")
	if err == nil {
		resp.Body.Close()
		assert.NotEqual(t, 2, resp.ProtoMajor, "HTTP/2 without h2c")
	}
	assert.Len(t, r.logs.lines("tinylb listening", `protocols=[http/1.1]`), 1)
}

// The status page stays plain HTTP/1.1 whatever the listener speaks.
func TestFrontStatusPageStaysHTTP1(t *testing.T) {
	cert := newTestCert(t, t.TempDir())
	path := writeConfig(t, fmt.Sprintf(`{"backends": [{"url": %q}], "tls": {"cert": %q, "key": %q}, "status": {"listen": "127.0.0.1:0"}}`,
		protoBackend(t).URL, cert.cert, cert.key))
	r := start(t, "-config", path)

	resp, _ := post(t, client(t, cert.pool, h2), "https://"+r.p.Addr().String(), "")
	assert.Equal(t, 2, resp.ProtoMajor, "the proxy's listener")

	status := "http://" + r.p.StatusAddr().String() + "/json"
	resp, err := client(t, nil, h2c).Get(status)
	if err == nil {
		resp.Body.Close()
		assert.NotEqual(t, 2, resp.ProtoMajor, "the status page over h2c")
	}
	resp, err = client(t, nil, http1).Get(status)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, 1, resp.ProtoMajor)
	assert.Contains(t, string(body), `"backends"`)
}

// On a listener without h2c, the HTTP/2 preface of a client that assumed
// h2c is answered 505 by the balancer without trying a backend, whose
// failed attempts to forward it would have taken the backends out.
func TestFrontH2PrefaceWithoutH2C(t *testing.T) {
	a, b := protoBackend(t), protoBackend(t)
	r := start(t, "-backend", a.URL, "-backend", b.URL)
	for range 3 {
		c, err := net.Dial("tcp", r.p.Addr().String())
		require.NoError(t, err)
		_, err = io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
		require.NoError(t, err)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		resp.Body.Close()
		c.Close()
		assert.Equal(t, http.StatusHTTPVersionNotSupported, resp.StatusCode)
	}
	for _, s := range r.p.bal.Stats().Backends {
		assert.Equal(t, lb.StateUp, s.State, "%s", s.URL)
		assert.Zero(t, s.Requests, "requests at %s", s.URL)
	}
	resp, body := post(t, client(t, nil, http1), r.url, "after")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "http after", body)
}

// A TLS client that never sends its hello is closed after read_header,
// as a client that never sends its headers is.
func TestFrontTLSHandshakeBounded(t *testing.T) {
	cert := newTestCert(t, t.TempDir())
	path := writeConfig(t, fmt.Sprintf(`{"backends": [{"url": %q}], "tls": {"cert": %q, "key": %q}, "timeouts": {"read_header": "50ms"}}`,
		protoBackend(t).URL, cert.cert, cert.key))
	r := start(t, "-config", path)
	c, err := net.Dial("tcp", r.p.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = c.Read(make([]byte, 1))
	require.Error(t, err)
	var ne net.Error
	assert.False(t, errors.As(err, &ne) && ne.Timeout(), "the proxy still holds the connection after 10s: %v", err)
}
