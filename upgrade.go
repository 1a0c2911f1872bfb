package lb

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
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

// asksUpgrade reports whether a request with header h is proxied as an
// upgrade: its Connection header has the upgrade token, and its Upgrade
// header offers a protocol other than h2c, which is never forwarded (see
// dropH2C). A request that offers only h2c is proxied as a plain request.
func asksUpgrade(h http.Header) bool {
	if !hasToken(h["Connection"], "upgrade") {
		return false
	}
	up := h["Upgrade"]
	return !offersH2C(up) || withoutH2C(up) != ""
}

// dropH2C keeps a client's h2c upgrade from reaching the backend, on both
// paths (rewrite calls it). A backend that accepts h2c would switch the
// connection to HTTP/2 and give the client a tunnel past the balancer: its
// requests on that connection would never be seen, balanced, rewritten or
// checked again ("h2c smuggling"). So the h2c token leaves the Upgrade
// list, and the request goes on as an upgrade to what remains, if anything
// does, else as a plain one. When h2c is offered, the list is rebuilt from
// all of the client's Upgrade lines, not just the first one ReverseProxy
// forwards, so that "Upgrade: h2c" followed by "Upgrade: websocket" still
// upgrades to websocket. HTTP2-Settings goes in any case: RFC 9113 §3.2.1
// (RFC 7540's) makes it a connection option, for the next hop only.
// ReverseProxy has already removed the headers that Connection named and
// rebuilt Connection as "Upgrade"; relay has removed Upgrade and
// Connection altogether.
func dropH2C(pr *httputil.ProxyRequest) {
	h := pr.Out.Header
	delete(h, "Http2-Settings")
	if _, ok := h["Upgrade"]; !ok || !offersH2C(pr.In.Header["Upgrade"]) {
		return
	}
	if up := withoutH2C(pr.In.Header["Upgrade"]); up != "" {
		h["Upgrade"] = []string{up}
		return
	}
	delete(h, "Upgrade")
	delete(h, "Connection")
}

// isH2C reports whether the Upgrade token tok (a protocol name and an
// optional "/version") names h2c, without case.
func isH2C(tok string) bool {
	name, _, _ := strings.Cut(tok, "/")
	return asciiEqualFold(textproto.TrimString(name), "h2c")
}

// offersH2C reports whether one of the comma-separated Upgrade lists in
// values names h2c.
func offersH2C(values []string) bool {
	for _, v := range values {
		for v != "" {
			var f string
			f, v, _ = strings.Cut(v, ",")
			if isH2C(f) {
				return true
			}
		}
	}
	return false
}

// withoutH2C joins the tokens of the Upgrade lists in values but h2c (and
// empty ones) into one list.
func withoutH2C(values []string) string {
	var b strings.Builder
	for _, v := range values {
		for v != "" {
			var f string
			f, v, _ = strings.Cut(v, ",")
			if f = textproto.TrimString(f); f == "" || isH2C(f) {
				continue
			}
			if b.Len() > 0 {
				b.WriteString(", ")
			}
			b.WriteString(f)
		}
	}
	return b.String()
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
