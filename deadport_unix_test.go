//go:build unix

package lb_test

import (
	"fmt"
	"syscall"
	"testing"
)

// refusingURL returns the URL of a local port that refuses connections: a
// socket bound to 127.0.0.1 that never listens. Unlike the port of a
// closed server, the port stays reserved until the test ends, so no server
// started meanwhile by a parallel test can take it.
func refusingURL(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("bind: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("getsockname: %v", err)
	}
	return fmt.Sprintf("http://127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}
