package lb

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestWantsHTTP2: which requests each BackendProtocol sends over HTTP/2.
// gRPC is its content type, with a subtype or parameters, in any case;
// gRPC-Web and look-alikes are not, and an upgrade never goes over HTTP/2.
func TestWantsHTTP2(t *testing.T) {
	for _, c := range []struct {
		contentType, connection string
		grpc, all               bool // under BackendHTTP2ForGRPC, BackendHTTP2
	}{
		{"application/grpc", "", true, true},
		{"application/grpc+proto", "", true, true},
		{"application/grpc+json", "", true, true},
		{"application/grpc; charset=utf-8", "", true, true},
		{"Application/GRPC", "", true, true},
		{"application/grpc-web", "", false, true},
		{"application/grpc-web+proto", "", false, true},
		{"application/grpc-web-text", "", false, true},
		{"application/grpcx", "", false, true},
		{"application/json", "", false, true},
		{"", "", false, true},
		{"application/grpc", "Upgrade", false, false},
		{"", "keep-alive, upgrade", false, false},
	} {
		h := http.Header{}
		if c.contentType != "" {
			h.Set("Content-Type", c.contentType)
		}
		if c.connection != "" {
			h.Set("Connection", c.connection)
		}
		assert.Equal(t, c.grpc, BackendHTTP2ForGRPC.wantsHTTP2(h), "BackendHTTP2ForGRPC, %v", h)
		assert.Equal(t, c.all, BackendHTTP2.wantsHTTP2(h), "BackendHTTP2, %v", h)
		assert.False(t, BackendHTTP1.wantsHTTP2(h), "BackendHTTP1, %v", h)
	}
}
