package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFrontConfig(t *testing.T) {
	cert := newTestCert(t, t.TempDir())
	be := `"backends": [{"url": "http://127.0.0.1:9001"}]`

	path := writeConfig(t, fmt.Sprintf(`{%s, "tls": {"cert": %q, "key": %q},
		"http2": {"max_concurrent_streams": 100, "max_read_frame_size": 16384,
			"max_receive_buffer_per_connection": 65535, "max_receive_buffer_per_stream": 16384}}`, be, cert.cert, cert.key))
	c, err := load([]string{"-config", path})
	require.NoError(t, err)
	assert.Equal(t, tlsConfig{Cert: cert.cert, Key: cert.key}, c.TLS)
	assert.False(t, c.H2C)
	assert.Equal(t, http2Config{MaxConcurrentStreams: 100, MaxReadFrameSize: 16384,
		MaxReceiveBufferPerConnection: 65535, MaxReceiveBufferPerStream: 16384}, c.HTTP2)

	// A file that names only some limits keeps the defaults of the others.
	path = writeConfig(t, `{`+be+`, "h2c": true, "http2": {"max_concurrent_streams": 1}}`)
	c, err = load([]string{"-config", path})
	require.NoError(t, err)
	want := defaultHTTP2()
	want.MaxConcurrentStreams = 1
	assert.Equal(t, want, c.HTTP2)
	assert.True(t, c.H2C)

	// The flags.
	c, err = load([]string{"-backend", "http://127.0.0.1:9001", "-tls-cert", cert.cert, "-tls-key", cert.key})
	require.NoError(t, err)
	assert.Equal(t, tlsConfig{Cert: cert.cert, Key: cert.key}, c.TLS)
	assert.Equal(t, defaultHTTP2(), c.HTTP2)
	c, err = load([]string{"-backend", "http://127.0.0.1:9001", "-h2c"})
	require.NoError(t, err)
	assert.True(t, c.H2C)
	// -h2c=false over a file's h2c, and flags over the file's files.
	other := newTestCert(t, t.TempDir())
	path = writeConfig(t, fmt.Sprintf(`{%s, "h2c": true, "tls": {"cert": "/nonexistent.pem", "key": %q}}`, be, cert.key))
	c, err = load([]string{"-config", path, "-h2c=false", "-tls-cert", other.cert, "-tls-key", other.key})
	require.NoError(t, err)
	assert.Equal(t, tlsConfig{Cert: other.cert, Key: other.key}, c.TLS)
	assert.False(t, c.H2C)
}

func TestFrontConfigErrors(t *testing.T) {
	dir := t.TempDir()
	a, b := newTestCert(t, dir), newTestCert(t, t.TempDir())
	missing := filepath.Join(dir, "missing.pem")
	garbage := filepath.Join(dir, "garbage.pem")
	require.NoError(t, os.WriteFile(garbage, []byte("not PEM\n"), 0o600))
	tlsOf := func(cert, key string) string { return fmt.Sprintf(`"tls": {"cert": %q, "key": %q}`, cert, key) }
	be := `"backends": [{"url": "http://127.0.0.1:9001"}]`

	files := []struct{ name, settings, want string }{
		{"missing cert file", tlsOf(missing, a.key), fmt.Sprintf("tls.cert: %q: cannot read it: no such file or directory", missing)},
		{"missing key file", tlsOf(a.cert, missing), fmt.Sprintf("tls.key: %q: cannot read it: no such file or directory", missing)},
		{"cert and key that do not match", tlsOf(a.cert, b.key), fmt.Sprintf("tls.key: %q: tls: private key does not match public key", b.key)},
		{"key as the cert", tlsOf(a.key, a.key), fmt.Sprintf("tls.cert: %q: no PEM block of type CERTIFICATE", a.key)},
		{"garbage cert", tlsOf(garbage, a.key), fmt.Sprintf("tls.cert: %q: no PEM block of type CERTIFICATE", garbage)},
		{"cert as the key", tlsOf(a.cert, a.cert), fmt.Sprintf("tls.key: %q: tls: found a certificate rather than a key in the PEM for the private key", a.cert)},
		{"cert without key", fmt.Sprintf(`"tls": {"cert": %q}`, a.cert), "tls.key: missing: a certificate needs its private key"},
		{"key without cert", fmt.Sprintf(`"tls": {"key": %q}`, a.key), "tls.cert: missing: a private key needs its certificate"},
		{"h2c with tls", tlsOf(a.cert, a.key) + `, "h2c": true`, "h2c: true: not with TLS, which offers HTTP/2 by ALPN (h2) already"},
		{"h2c not a bool", `"h2c": "yes"`, `h2c: "yes": want true or false`},
		{"unknown tls field", `"tls": {"crt": "x"}`, "tls.crt: unknown field (want cert or key)"},
		{"unknown http2 field", `"http2": {"max_streams": 5}`, "http2.max_streams: unknown field (want max_concurrent_streams, max_read_frame_size, " +
			"max_receive_buffer_per_connection or max_receive_buffer_per_stream)"},
		{"streams zero", `"http2": {"max_concurrent_streams": 0}`, "http2.max_concurrent_streams: 0: must be between 1 and 10000: each stream can hold a request to a backend"},
		{"streams too many", `"http2": {"max_concurrent_streams": 10001}`, "http2.max_concurrent_streams: 10001: must be between 1 and 10000: each stream can hold a request to a backend"},
		{"frame too small", `"http2": {"max_read_frame_size": 16383}`, "http2.max_read_frame_size: 16383: must be between 16384 and 16777215 (RFC 9113)"},
		{"frame too large", `"http2": {"max_read_frame_size": 16777216}`, "http2.max_read_frame_size: 16777216: must be between 16384 and 16777215 (RFC 9113)"},
		{"connection window too small", `"http2": {"max_receive_buffer_per_connection": 65534}`, "http2.max_receive_buffer_per_connection: 65534: must be between 65535 and 4194304"},
		{"stream window too small", `"http2": {"max_receive_buffer_per_stream": 0}`, "http2.max_receive_buffer_per_stream: 0: must be between 16384 and 4194304"},
		{"stream window above the connection's", `"http2": {"max_receive_buffer_per_connection": 65535, "max_receive_buffer_per_stream": 65536}`,
			"http2.max_receive_buffer_per_stream: 65536: above http2.max_receive_buffer_per_connection (65535): a stream cannot use more than its connection's window"},
	}
	for _, tt := range files {
		path := writeConfig(t, `{`+be+`, `+tt.settings+`}`)
		_, err := load([]string{"-config", path})
		assert.EqualError(t, err, path+": "+tt.want, tt.name)
	}

	const backend = "-backend=http://127.0.0.1:9001"
	flags := []struct {
		name string
		args []string
		want string
	}{
		{"missing cert file", []string{"-tls-cert", missing, "-tls-key", a.key}, fmt.Sprintf("-tls-cert: %q: cannot read it: no such file or directory", missing)},
		{"cert and key that do not match", []string{"-tls-cert", a.cert, "-tls-key", b.key}, fmt.Sprintf("-tls-key: %q: tls: private key does not match public key", b.key)},
		{"cert without key", []string{"-tls-cert", a.cert}, "-tls-key: missing: a certificate needs its private key"},
		{"key without cert", []string{"-tls-key", a.key}, "-tls-cert: missing: a private key needs its certificate"},
		{"h2c with tls", []string{"-tls-cert", a.cert, "-tls-key", a.key, "-h2c"}, "-h2c: true: not with TLS, which offers HTTP/2 by ALPN (h2) already"},
	}
	for _, tt := range flags {
		_, err := load(append([]string{backend}, tt.args...))
		assert.EqualError(t, err, tt.want, tt.name)
	}

	// A bad pair in the file is the file's error, whatever other flag is given.
	path := writeConfig(t, fmt.Sprintf(`{%s, %s}`, be, tlsOf(a.cert, b.key)))
	_, err := load([]string{"-config", path, "-h2c=false"})
	assert.EqualError(t, err, path+": "+fmt.Sprintf("tls.key: %q: tls: private key does not match public key", b.key))
}

// The listener's settings need a restart: a reload names them.
func TestFrontSettingsNeedRestart(t *testing.T) {
	old := defaults(backendConfig{URL: "http://127.0.0.1:9001", Weight: 1})
	next := old
	next.TLS = tlsConfig{Cert: "/etc/tinylb/cert.pem", Key: "/etc/tinylb/key.pem"}
	next.H2C = true
	next.HTTP2.MaxConcurrentStreams = 100
	next.HTTP2.MaxReceiveBufferPerStream = 1 << 16
	assert.Equal(t, []string{"tls.cert", "tls.key", "h2c", "http2.max_concurrent_streams", "http2.max_receive_buffer_per_stream"},
		changedSettings(old, next))
}

func TestFrontFlagsInUsage(t *testing.T) {
	var b strings.Builder
	usage(&b)
	for _, want := range []string{"-tls-cert file", "-tls-key file", "-h2c", "HTTPS, with HTTP/2 (h2) and\nHTTP/1.1 by ALPN"} {
		assert.Contains(t, b.String(), want)
	}
}
