//go:build !unix

package lb_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// refusingURL returns the URL of a local port that refuses connections: that
// of a server started and closed at once.
func refusingURL(t testing.TB) string {
	t.Helper()
	s := httptest.NewServer(http.NotFoundHandler())
	u := s.URL
	s.Close()
	return u
}
