package main

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A raw HTTP/2 client, written by hand (RFC 9113 §4.1, §6): frames are a
// 9-byte header (24-bit length, type, flags, 31-bit stream), and SETTINGS
// a list of 6-byte entries (16-bit identifier, 32-bit value). Go's own
// client neither shows the server's SETTINGS nor opens more streams than
// it allows, and the module takes no x/net.

const (
	frameHeaders      = 0x1
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePing         = 0x6
	frameWindowUpdate = 0x8

	flagAck        = 0x1 // SETTINGS, PING
	flagEndStream  = 0x1 // HEADERS
	flagEndHeaders = 0x4 // HEADERS

	settingHeaderTableSize      = 0x1
	settingMaxConcurrentStreams = 0x3
	settingInitialWindowSize    = 0x4
	settingMaxFrameSize         = 0x5
	settingMaxHeaderListSize    = 0x6

	errProtocol      = 0x1
	errRefusedStream = 0x7
)

type frame struct {
	typ, flags byte
	stream     uint32
	payload    []byte
}

// h2Client is a raw HTTP/2 connection.
type h2Client struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

// dialH2C opens an h2c connection with prior knowledge to addr.
func dialH2C(t *testing.T, addr string) *h2Client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	return newH2Client(t, c)
}

// dialH2TLS opens an HTTP/2 connection over TLS to addr, h2 by ALPN.
func dialH2TLS(t *testing.T, addr string, cert testCert) *h2Client {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: cert.pool, NextProtos: []string{"h2"}})
	require.NoError(t, err)
	require.Equal(t, "h2", c.ConnectionState().NegotiatedProtocol)
	return newH2Client(t, c)
}

// newH2Client sends the client preface and an empty SETTINGS frame on c.
func newH2Client(t *testing.T, c net.Conn) *h2Client {
	t.Helper()
	t.Cleanup(func() { c.Close() })
	h := &h2Client{t: t, c: c, br: bufio.NewReader(c)}
	_, err := io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	require.NoError(t, err)
	h.write(frameSettings, 0, 0, nil)
	return h
}

func (h *h2Client) write(typ, flags byte, stream uint32, payload []byte) {
	h.t.Helper()
	f := make([]byte, 9, 9+len(payload))
	f[0], f[1], f[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	f[3], f[4] = typ, flags
	binary.BigEndian.PutUint32(f[5:], stream&0x7fffffff)
	_, err := h.c.Write(append(f, payload...))
	require.NoError(h.t, err)
}

// read returns the next frame the server sends, waiting up to 10s.
func (h *h2Client) read() frame {
	h.t.Helper()
	require.NoError(h.t, h.c.SetReadDeadline(time.Now().Add(10*time.Second)))
	hdr := make([]byte, 9)
	_, err := io.ReadFull(h.br, hdr)
	require.NoError(h.t, err, "reading a frame header")
	f := frame{typ: hdr[3], flags: hdr[4], stream: binary.BigEndian.Uint32(hdr[5:]) & 0x7fffffff}
	f.payload = make([]byte, int(hdr[0])<<16|int(hdr[1])<<8|int(hdr[2]))
	_, err = io.ReadFull(h.br, f.payload)
	require.NoError(h.t, err, "reading a frame payload")
	return f
}

// serverSettings reads what the server announces when the connection
// opens: its SETTINGS, and the connection's flow-control window, which
// starts at 65535 and grows by the WINDOW_UPDATE on stream 0 that may
// follow. It acknowledges the SETTINGS. To know that no WINDOW_UPDATE is
// still to come, it sends a PING: the server queues the answer after the
// frames it queued when the connection opened (unlike its SETTINGS ACK,
// which may go before them).
func (h *h2Client) serverSettings() (settings map[uint16]uint32, connWindow uint32) {
	h.t.Helper()
	h.write(framePing, 0, 0, make([]byte, 8))
	connWindow = 65535
	for pong := false; !pong || settings == nil; {
		f := h.read()
		switch {
		case f.typ == framePing && f.flags&flagAck != 0:
			pong = true
		case f.typ == frameSettings && f.flags&flagAck != 0:
		case f.typ == frameSettings:
			require.Zero(h.t, len(f.payload)%6, "SETTINGS payload of %d bytes", len(f.payload))
			settings = make(map[uint16]uint32)
			for p := f.payload; len(p) > 0; p = p[6:] {
				settings[binary.BigEndian.Uint16(p)] = binary.BigEndian.Uint32(p[2:])
			}
			h.write(frameSettings, flagAck, 0, nil)
		case f.typ == frameWindowUpdate && f.stream == 0:
			connWindow += binary.BigEndian.Uint32(f.payload) & 0x7fffffff
		}
	}
	return settings, connWindow
}

// get opens stream id with a GET of / (HPACK, RFC 7541: :method GET,
// :scheme http, :path / from the static table, :authority x as a literal).
func (h *h2Client) get(id uint32) {
	h.t.Helper()
	h.write(frameHeaders, flagEndStream|flagEndHeaders, id, []byte{0x82, 0x86, 0x84, 0x01, 0x01, 'x'})
}

// The HTTP/2 limits of the config are what the server announces, over
// h2c and TLS alike; left out, they are Go's defaults, set explicitly.
func TestFrontHTTP2SettingsAnnounced(t *testing.T) {
	cert := newTestCert(t, t.TempDir())
	be := protoBackend(t).URL
	const custom = `"http2": {"max_concurrent_streams": 17, "max_read_frame_size": 32768,
		"max_receive_buffer_per_connection": 262144, "max_receive_buffer_per_stream": 65536}, "max_header_bytes": 8192`
	tests := []struct {
		name, settings string
		tls            bool
		streams, frame uint32
		conn, stream   uint32
		headerList     uint32
	}{
		{"h2c defaults", `"h2c": true`, false, 250, 1 << 20, 1 << 20, 1 << 20, 65536 + 320},
		{"h2c set", `"h2c": true, ` + custom, false, 17, 32768, 262144, 65536, 8192 + 320},
		{"tls defaults", fmt.Sprintf(`"tls": {"cert": %q, "key": %q}`, cert.cert, cert.key), true, 250, 1 << 20, 1 << 20, 1 << 20, 65536 + 320},
		{"tls set", fmt.Sprintf(`"tls": {"cert": %q, "key": %q}, `, cert.cert, cert.key) + custom, true, 17, 32768, 262144, 65536, 8192 + 320},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, fmt.Sprintf(`{"backends": [{"url": %q}], %s}`, be, tt.settings))
			r := start(t, "-config", path)
			var h *h2Client
			if tt.tls {
				h = dialH2TLS(t, r.p.Addr().String(), cert)
			} else {
				h = dialH2C(t, r.p.Addr().String())
			}
			settings, conn := h.serverSettings()
			assert.Equal(t, tt.streams, settings[settingMaxConcurrentStreams], "SETTINGS_MAX_CONCURRENT_STREAMS")
			assert.Equal(t, tt.frame, settings[settingMaxFrameSize], "SETTINGS_MAX_FRAME_SIZE")
			assert.Equal(t, tt.stream, settings[settingInitialWindowSize], "SETTINGS_INITIAL_WINDOW_SIZE")
			assert.Equal(t, tt.conn, conn, "the connection's window")
			// net/http derives these: the header list from MaxHeaderBytes
			// (plus 32 bytes for each of 10 fields), the table its default.
			assert.Equal(t, tt.headerList, settings[settingMaxHeaderListSize], "SETTINGS_MAX_HEADER_LIST_SIZE")
			assert.EqualValues(t, 4096, settings[settingHeaderTableSize], "SETTINGS_HEADER_TABLE_SIZE")
		})
	}
}

// holdingBackend is a test backend whose requests wait until the test
// ends; it counts them.
type holdingBackend struct {
	*httptest.Server
	mu      sync.Mutex // protects n
	n       int
	arrived chan struct{} // a value per request
}

func newHoldingBackend(t *testing.T) *holdingBackend {
	t.Helper()
	b := &holdingBackend{arrived: make(chan struct{}, 100)}
	release := make(chan struct{})
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.n++
		b.mu.Unlock()
		b.arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(b.Close)
	t.Cleanup(func() { close(release) }) // runs first
	return b
}

func (b *holdingBackend) requests() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

// max_concurrent_streams is enforced, not only announced: with as many
// streams open as it allows, the next one is reset and never reaches a
// backend. This bound on the requests one connection holds in flight is
// what net/http's rapid-reset defence rests on.
func TestFrontMaxConcurrentStreamsEnforced(t *testing.T) {
	be := newHoldingBackend(t)
	path := writeConfig(t, fmt.Sprintf(`{"backends": [{"url": %q}], "h2c": true, "http2": {"max_concurrent_streams": 3}}`, be.URL))
	r := start(t, "-config", path)
	h := dialH2C(t, r.p.Addr().String())
	settings, _ := h.serverSettings()
	require.EqualValues(t, 3, settings[settingMaxConcurrentStreams])

	for _, id := range []uint32{1, 3, 5} {
		h.get(id)
	}
	for range 3 {
		select {
		case <-be.arrived:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of 3 requests reached the backend within 10s", be.requests())
		}
	}
	h.get(7) // one stream too many
	for {
		f := h.read()
		if f.typ != frameRSTStream {
			continue
		}
		require.EqualValues(t, 7, f.stream, "RST_STREAM of stream %d", f.stream)
		// PROTOCOL_ERROR: the client knew the limit (it acknowledged the
		// SETTINGS); REFUSED_STREAM if it could not have.
		code := binary.BigEndian.Uint32(f.payload)
		assert.Contains(t, []uint32{errProtocol, errRefusedStream}, code, "RST_STREAM error code")
		break
	}
	assert.Equal(t, 3, be.requests(), "requests at the backend")
}
