package main

import (
	"crypto/tls"
	"fmt"
	"math/big"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var dialer = &net.Dialer{Timeout: 10 * time.Second}

// servedSerial returns the serial number of the certificate the proxy at
// addr serves on a new connection, trusting cert.
func servedSerial(t *testing.T, addr string, cert testCert) *big.Int {
	t.Helper()
	c, err := tls.DialWithDialer(dialer, "tcp", addr, &tls.Config{RootCAs: cert.pool, NextProtos: []string{"h2"}})
	require.NoError(t, err)
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber
}

// A reload re-reads the certificate and key of the same files: a renewed
// certificate serves the connections that come after, without a restart.
// A pair that no longer matches is refused and the old one stays. The
// HTTP/2 limits need a restart.
func TestFrontReloadRenewsCertificate(t *testing.T) {
	dir := t.TempDir()
	first := newTestCert(t, dir)
	be := protoBackend(t).URL
	conf := func(streams int) string {
		return fmt.Sprintf(`{"backends": [{"url": %q}], "tls": {"cert": %q, "key": %q}, "http2": {"max_concurrent_streams": %d}}`,
			be, first.cert, first.key, streams)
	}
	path := writeConfig(t, conf(250))
	r := start(t, "-config", path)
	addr := r.p.Addr().String()
	assert.Equal(t, first.leaf.SerialNumber, servedSerial(t, addr, first))

	second := newTestCert(t, dir) // the same files
	rewrite(t, path, conf(100))
	require.NoError(t, r.p.Reload())
	assert.Equal(t, second.leaf.SerialNumber, servedSerial(t, addr, second))
	assert.Len(t, r.logs.lines("config reload: new certificate", "tls_cert_expires="+second.leaf.NotAfter.UTC().Format(time.RFC3339)), 1)
	assert.Len(t, r.logs.lines("needs restart", "http2.max_concurrent_streams"), 1)
	assert.Equal(t, 250, r.p.config().HTTP2.MaxConcurrentStreams, "the limit in effect")

	// A key that does not match its certificate: the reload is refused.
	other := newTestCert(t, t.TempDir())
	key, err := os.ReadFile(other.key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(second.key, key, 0o600))
	require.ErrorContains(t, r.p.Reload(), "tls.key")
	assert.Equal(t, second.leaf.SerialNumber, servedSerial(t, addr, second))
}

// Without a config file, a reload still renews the certificate of the
// flags.
func TestFrontReloadRenewsCertificateOfFlags(t *testing.T) {
	dir := t.TempDir()
	first := newTestCert(t, dir)
	r := start(t, "-tls-cert", first.cert, "-tls-key", first.key, "-backend", protoBackend(t).URL)
	require.NoError(t, r.p.Reload())
	assert.Len(t, r.logs.lines("no -config file and no new certificate"), 1, "a reload with the same certificate")

	second := newTestCert(t, dir)
	require.NoError(t, r.p.Reload())
	assert.Equal(t, second.leaf.SerialNumber, servedSerial(t, r.p.Addr().String(), second))
	assert.Len(t, r.logs.lines("config reload: new certificate"), 1)
	assert.Len(t, r.logs.lines("no -config file"), 1, "no second warning")
}
