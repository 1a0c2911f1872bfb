package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"strconv"
)

// tlsConfig is the certificate of the proxy's listener. With both files,
// the listener speaks TLS and offers h2 and http/1.1 by ALPN.
type tlsConfig struct {
	Cert string `json:"cert"` // PEM file: the certificate, then any intermediates
	Key  string `json:"key"`  // PEM file: its private key
}

// on reports whether TLS is configured.
func (t *tlsConfig) on() bool { return t.Cert != "" || t.Key != "" }

// http2Config is the HTTP/2 server's limits (net/http's HTTP2Config of
// the same names), used with tls or h2c. Each is set explicitly, so a Go
// release that changes its defaults does not change the proxy's.
type http2Config struct {
	// MaxConcurrentStreams bounds the streams a client may have open on
	// one connection, and so the requests in flight it can start; the
	// server also runs at most this many handlers per connection and
	// queues at most 4x more, which is what bounds a rapid reset
	// (CVE-2023-44487).
	MaxConcurrentStreams int `json:"max_concurrent_streams"`
	// MaxReadFrameSize is the largest frame the server reads.
	MaxReadFrameSize int `json:"max_read_frame_size"`
	// MaxReceiveBufferPerConnection and MaxReceiveBufferPerStream are the
	// flow-control windows for request bodies: what one client connection
	// and one stream may send ahead of the proxy reading it.
	MaxReceiveBufferPerConnection int `json:"max_receive_buffer_per_connection"`
	MaxReceiveBufferPerStream     int `json:"max_receive_buffer_per_stream"`
}

// Defaults of http2Config: Go 1.26's.
const (
	defaultMaxConcurrentStreams = 250
	defaultMaxReadFrameSize     = 1 << 20
	defaultReceiveBuffer        = 1 << 20
)

func defaultHTTP2() http2Config {
	return http2Config{
		MaxConcurrentStreams:          defaultMaxConcurrentStreams,
		MaxReadFrameSize:              defaultMaxReadFrameSize,
		MaxReceiveBufferPerConnection: defaultReceiveBuffer,
		MaxReceiveBufferPerStream:     defaultReceiveBuffer,
	}
}

// Bounds of http2Config. net/http silently uses its default for a value
// out of its range; the proxy refuses it instead.
const (
	maxConcurrentStreams = 10000
	minFrameSize         = 1 << 14   // RFC 9113 §4.2
	maxFrameSize         = 1<<24 - 1 // RFC 9113 §4.2
	minConnWindow        = 65535     // RFC 9113 §6.9.2, the initial window
	minStreamWindow      = 1 << 14
	maxWindow            = 4 << 20 // net/http's documented bound
)

// validateFront checks the listener's protocols: the certificate and its
// key (read and matched now, so that a bad pair is a bad setting), h2c,
// and the HTTP/2 limits.
func (c *config) validateFront() error {
	if c.TLS.on() {
		if _, err := c.TLS.load(); err != nil {
			return err
		}
		if c.H2C {
			return badf("h2c", "true", "not with TLS, which offers HTTP/2 by ALPN (h2) already")
		}
	}
	return c.HTTP2.validate("http2")
}

// load reads the certificate and its key, reporting a problem under the
// setting of the file it lies in.
func (t *tlsConfig) load() (tls.Certificate, error) {
	switch {
	case t.Cert == "":
		return tls.Certificate{}, badf("tls.cert", "", "missing: a private key needs its certificate")
	case t.Key == "":
		return tls.Certificate{}, badf("tls.key", "", "missing: a certificate needs its private key")
	}
	certPEM, err := os.ReadFile(t.Cert)
	if err != nil {
		return tls.Certificate{}, badf("tls.cert", quote(t.Cert), "cannot read it: %v", pathless(err))
	}
	keyPEM, err := os.ReadFile(t.Key)
	if err != nil {
		return tls.Certificate{}, badf("tls.key", quote(t.Key), "cannot read it: %v", pathless(err))
	}
	// What tls.LoadX509KeyPair does once it has read the files.
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if certErr := certProblem(certPEM); certErr != nil {
			return tls.Certificate{}, badf("tls.cert", quote(t.Cert), "%v", certErr)
		}
		return tls.Certificate{}, badf("tls.key", quote(t.Key), "%v", err)
	}
	return pair, nil
}

// certProblem returns what is wrong with the certificate file's PEM data
// on its own, or nil.
func certProblem(certPEM []byte) error {
	found := false
	for rest := certPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			if _, err := x509.ParseCertificate(b.Bytes); err != nil {
				return err
			}
			found = true
		}
	}
	if !found {
		return errors.New("no PEM block of type CERTIFICATE")
	}
	return nil
}

// pathless is err without the file's path, which the message has already.
func pathless(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// validate checks the HTTP/2 limits; p is their path.
func (h *http2Config) validate(p string) error {
	for _, f := range []struct {
		name      string
		v, lo, hi int
		why       string
	}{
		{"max_concurrent_streams", h.MaxConcurrentStreams, 1, maxConcurrentStreams, ": each stream can hold a request to a backend"},
		{"max_read_frame_size", h.MaxReadFrameSize, minFrameSize, maxFrameSize, " (RFC 9113)"},
		{"max_receive_buffer_per_connection", h.MaxReceiveBufferPerConnection, minConnWindow, maxWindow, ""},
		{"max_receive_buffer_per_stream", h.MaxReceiveBufferPerStream, minStreamWindow, maxWindow, ""},
	} {
		if f.v < f.lo || f.v > f.hi {
			return badf(p+"."+f.name, strconv.Itoa(f.v), "must be between %d and %d%s", f.lo, f.hi, f.why)
		}
	}
	if h.MaxReceiveBufferPerStream > h.MaxReceiveBufferPerConnection {
		return badf(p+".max_receive_buffer_per_stream", strconv.Itoa(h.MaxReceiveBufferPerStream),
			"above %s.max_receive_buffer_per_connection (%d): a stream cannot use more than its connection's window",
			p, h.MaxReceiveBufferPerConnection)
	}
	return nil
}

// protocols returns the listener's protocols: HTTP/1.1, and HTTP/2 over
// TLS or, with h2c, in the clear.
func (c *config) protocols() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetHTTP2(c.TLS.on())
	p.SetUnencryptedHTTP2(c.H2C)
	return p
}

// http2 returns the HTTP/2 server's settings.
func (c *config) http2() *http.HTTP2Config {
	return &http.HTTP2Config{
		MaxConcurrentStreams:          c.HTTP2.MaxConcurrentStreams,
		MaxReadFrameSize:              c.HTTP2.MaxReadFrameSize,
		MaxReceiveBufferPerConnection: c.HTTP2.MaxReceiveBufferPerConnection,
		MaxReceiveBufferPerStream:     c.HTTP2.MaxReceiveBufferPerStream,
	}
}

// protoNames names the listener's protocols for the log.
func (c *config) protoNames() []string {
	switch {
	case c.TLS.on():
		return []string{"h2", "http/1.1"}
	case c.H2C:
		return []string{"h2c", "http/1.1"}
	}
	return []string{"http/1.1"}
}
