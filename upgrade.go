package lb

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// checkUpgrade rejects a 101 answer that does not switch to the protocol
// the client asked for. ReverseProxy rejects it too, but without closing
// the backend connection, which would leave the attempt open forever.
func checkUpgrade(req *http.Request, resp *http.Response) error {
	want, got := upgradeType(req.Header), upgradeType(resp.Header)
	if want == "" || !strings.EqualFold(want, got) {
		return fmt.Errorf("backend switched protocol to %q when %q was requested", got, want)
	}
	if _, ok := resp.Body.(io.ReadWriteCloser); !ok {
		return errors.New("101 response with a body that cannot be written")
	}
	return nil
}

// upgradeType returns the protocol h asks to switch to, if its Connection
// header has the upgrade token.
func upgradeType(h http.Header) string {
	if hasToken(h["Connection"], "upgrade") {
		return h.Get("Upgrade")
	}
	return ""
}

// trackedConn is the body of a 101 response: the backend connection, which
// ReverseProxy writes to as well as reads from.
type trackedConn struct {
	*trackedBody
	w io.Writer
}

func (t *trackedConn) Write(p []byte) (int, error) { return t.w.Write(p) }
