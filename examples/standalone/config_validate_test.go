package main

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The addresses to serve on are checked with the rest of the config, so
// that a port out of range is a bad flag or setting (exit 2), not a
// failure to listen once the proxy starts.
func TestListenAddressChecked(t *testing.T) {
	const be = "http://127.0.0.1:9001"
	for _, addr := range []string{"127.0.0.1:0", ":8080", "[::1]:8080", "localhost:65535", "lb-1.internal:80", "0.0.0.0:1", "[fe80::1%eth0]:80"} {
		_, err := load([]string{"-listen", addr, "-backend", be})
		assert.NoError(t, err, "-listen %s", addr)
	}

	bad := []struct{ addr, want string }{
		{"127.0.0.1:99999", "port must be between 1 and 65535, or 0 for any free port"},
		{"127.0.0.1:65536", "port must be between 1 and 65535, or 0 for any free port"},
		{"127.0.0.1:-1", "port must be between 1 and 65535, or 0 for any free port"},
		{"127.0.0.1:http", "port must be between 1 and 65535, or 0 for any free port"},
		{"127.0.0.1:", "port must be between 1 and 65535, or 0 for any free port"},
		{"127.0.0.1", "want host:port, e.g. 127.0.0.1:8080 or :8080"},
		{"8080", "want host:port, e.g. 127.0.0.1:8080 or :8080"},
		{"a b:8080", "not an IP address or host name"},
		{"http://127.0.0.1:8080", "want host:port, e.g. 127.0.0.1:8080 or :8080"},
	}
	for _, tt := range bad {
		_, err := load([]string{"-listen", tt.addr, "-backend", be})
		assert.EqualError(t, err, fmt.Sprintf("-listen: %q: %s", tt.addr, tt.want))

		path := writeConfig(t, fmt.Sprintf(`{"listen": %q, "backends": [{"url": %q}]}`, tt.addr, be))
		_, err = load([]string{"-config", path})
		assert.EqualError(t, err, fmt.Sprintf("%s: listen: %q: %s", path, tt.addr, tt.want))

		path = writeConfig(t, fmt.Sprintf(`{"backends": [{"url": %q}], "status": {"listen": %q}}`, be, tt.addr))
		_, err = load([]string{"-config", path})
		assert.EqualError(t, err, fmt.Sprintf("%s: status.listen: %q: %s", path, tt.addr, tt.want))
	}

	// A flag still fixes a bad file setting.
	path := writeConfig(t, fmt.Sprintf(`{"listen": "127.0.0.1:99999", "backends": [{"url": %q}]}`, be))
	c, err := load([]string{"-config", path, "-listen", "127.0.0.1:0"})
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:0", c.Listen)
}
