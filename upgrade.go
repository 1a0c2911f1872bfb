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

// CloseWrite half-closes the backend connection. ReverseProxy calls it when
// the client has half-closed its side of the tunnel, and then keeps copying
// the backend's answer to the client until the backend closes too; without
// it, ReverseProxy ended the tunnel on the client's EOF, and whatever the
// backend sent afterwards was lost. http.Transport's 101 body has
// CloseWrite (of the *net.TCPConn under it); a body from another
// RoundTripper that has none gets the error, and ReverseProxy closes both
// sides as before.
func (t *trackedConn) CloseWrite() error {
	if cw, ok := t.w.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("lb: CloseWrite on a %T: %w", t.w, http.ErrNotSupported)
}
