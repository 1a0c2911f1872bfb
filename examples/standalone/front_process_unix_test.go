//go:build unix

package main

import (
	"fmt"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A certificate that does not match its key, or a file that cannot be
// read, stops the proxy before it starts: exit status 2, naming the flag
// or the field.
func TestProcessBadCertificateExits2(t *testing.T) {
	a, b := newTestCert(t, t.TempDir()), newTestCert(t, t.TempDir())
	path := writeConfig(t, fmt.Sprintf(`{"listen": "127.0.0.1:0", "backends": [{"url": "http://127.0.0.1:9001"}], "tls": {"cert": %q, "key": "/nonexistent/key.pem"}}`, a.cert))
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-listen", "127.0.0.1:0", "-backend", "http://127.0.0.1:9001", "-tls-cert", a.cert, "-tls-key", b.key},
			fmt.Sprintf("-tls-key: %q: tls: private key does not match public key", b.key)},
		{[]string{"-config", path},
			path + `: tls.key: "/nonexistent/key.pem": cannot read it: no such file or directory`},
	} {
		out, err := tinylb(t, tt.args...).CombinedOutput()
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee, "output:\n%s", out)
		assert.Equal(t, 2, ee.ExitCode(), "output:\n%s", out)
		assert.Equal(t, "tinylb: "+tt.want+"\nRun 'tinylb -h' for usage.\n", string(out))
	}
}
