package lb

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestEncodeGRPCMessage: grpc-message is UTF-8, percent-encoded outside
// space to '~' and for '%' itself, with upper-case hex digits
// (PROTOCOL-HTTP2.md, Status-Message); invalid UTF-8 becomes U+FFFD.
func TestEncodeGRPCMessage(t *testing.T) {
	for in, want := range map[string]string{
		"":                       "",
		"lb: no healthy backend": "lb: no healthy backend",
		"100% done":              "100%25 done",
		"two\nlines\r\t":         "two%0Alines%0D%09",
		"caf\u00e9 \u2713":       "caf%C3%A9 %E2%9C%93",
		"bad \xff byte":          "bad %EF%BF%BD byte",
		"~ and \x7f":             "~ and %7F",
	} {
		assert.Equal(t, want, encodeGRPCMessage(in), "encodeGRPCMessage(%q)", in)
	}
}

// TestIsGRPC: a gRPC call is a POST with content-type application/grpc,
// bare, with a "+format" suffix or with parameters, in any case;
// gRPC-Web and look-alikes are not.
func TestIsGRPC(t *testing.T) {
	for _, c := range []struct {
		method string
		ct     []string
		want   bool
	}{
		{"POST", []string{"application/grpc"}, true},
		{"POST", []string{"application/grpc+proto"}, true},
		{"POST", []string{"application/grpc+json"}, true},
		{"POST", []string{"APPLICATION/gRPC"}, true},
		{"POST", []string{"application/grpc; charset=utf-8"}, true},
		{"POST", []string{"application/grpc-web"}, false},
		{"POST", []string{"application/grpc-web+proto"}, false},
		{"POST", []string{"application/grpcx"}, false},
		{"POST", []string{"application/gr"}, false},
		{"POST", []string{"text/plain", "application/grpc"}, false},
		{"POST", nil, false},
		{"GET", []string{"application/grpc"}, false},
		{"PUT", []string{"application/grpc"}, false},
	} {
		r := &http.Request{Method: c.method, Header: http.Header{}}
		if c.ct != nil {
			r.Header["Content-Type"] = c.ct
		}
		assert.Equal(t, c.want, isGRPC(r), "%s with content-type %q", c.method, c.ct)
	}
}

// TestGRPCFailure: only grpc-status 14 in the response headers (a
// Trailers-Only UNAVAILABLE) is a failure; other codes are answers.
func TestGRPCFailure(t *testing.T) {
	for _, c := range []struct {
		status []string
		failed bool
	}{{[]string{"14"}, true}, {[]string{" 14 "}, true}, {[]string{"0"}, false}, {[]string{"5"}, false},
		{[]string{"8"}, false}, {[]string{"4"}, false}, {[]string{"014"}, false}, {nil, false}} {
		h := http.Header{"Grpc-Message": {"going away"}}
		if c.status != nil {
			h["Grpc-Status"] = c.status
		}
		err := grpcFailure(h)
		assert.Equal(t, c.failed, err != nil, "grpc-status %q: %v", c.status, err)
		if err != nil {
			assert.Equal(t, "backend answered grpc-status 14 (UNAVAILABLE): going away", err.Error())
		}
	}
}
