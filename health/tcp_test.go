package health

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func TestTCPCheck(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan error, 1)
	go func() {
		conn, err := l.Accept()
		if err == nil {
			// The check closes the connection without sending anything.
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
		}
		accepted <- err
	}()

	c := TCPCheck{Timeout: time.Second}
	if err := c.Check(context.Background(), mustParse(t, "http://"+l.Addr().String())); err != nil {
		t.Fatalf("Check() = %v", err)
	}
	select {
	case err := <-accepted:
		if err == nil {
			t.Error("server read data; want EOF")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("check left its connection open")
	}

	l.Close()
	err = c.Check(context.Background(), mustParse(t, "http://"+l.Addr().String()))
	var opErr *net.OpError
	if !errors.As(err, &opErr) || !strings.HasPrefix(err.Error(), "health: tcp "+l.Addr().String()+": ") {
		t.Errorf("Check() on a closed port = %v; want a health: tcp error wrapping a *net.OpError", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Check(ctx, mustParse(t, "http://"+l.Addr().String())); !errors.Is(err, context.Canceled) {
		t.Errorf("Check(canceled ctx) = %v; want context.Canceled", err)
	}

	if err := (TCPCheck{Rise: -1}).Check(context.Background(), mustParse(t, "http://"+l.Addr().String())); err == nil || !strings.Contains(err.Error(), "Rise") {
		t.Errorf("Check() with Rise -1 = %v; want the Validate error", err)
	}
}

func TestTCPAddr(t *testing.T) {
	tests := []struct {
		target, want, wantErr string
	}{
		{"http://backend", "backend:80", ""},
		{"https://backend", "backend:443", ""},
		{"ws://backend", "backend:80", ""},
		{"wss://backend", "backend:443", ""},
		{"http://backend:8080/x", "backend:8080", ""},
		{"http://[::1]", "[::1]:80", ""},
		{"https://[::1]:8443", "[::1]:8443", ""},
		{"redis://cache:6379", "cache:6379", ""},
		{"redis://cache", "", `health: tcp: target "redis://cache" has no port`},
		{"http://u:secret@", "", `health: tcp: target "http://u:xxxxx@" has no host`},
	}
	for _, tt := range tests {
		got, err := tcpAddr(mustParse(t, tt.target))
		if got != tt.want || (err == nil) != (tt.wantErr == "") || (err != nil && err.Error() != tt.wantErr) {
			t.Errorf("tcpAddr(%s) = %q, %v; want %q, %q", tt.target, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestTCPCheckValidate(t *testing.T) {
	if err := (TCPCheck{}).Validate(); err != nil {
		t.Errorf("zero TCPCheck: Validate() = %v", err)
	}
	if err := (TCPCheck{Interval: time.Second, Timeout: time.Minute}).Validate(); err == nil || !strings.Contains(err.Error(), "Timeout") {
		t.Errorf("Validate() = %v; want an error naming Timeout", err)
	}
}
