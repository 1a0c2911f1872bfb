package health

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"time"
)

// TCPCheck is a [Checker] that passes when a TCP connection to the target
// opens; it closes the connection at once and sends nothing. The zero value
// checks on the default [Schedule].
//
// The address dialled is the host and port of the target; when the target
// has no port, the default port of its scheme (80 for http and ws, 443 for
// https and wss) is used. A TCPCheck holds no state and is safe for
// concurrent use.
type TCPCheck struct {
	// Interval, Timeout, Rise, Fall, Jitter and StartDown make the
	// [Schedule] that [TCPCheck.Schedule] returns; zero means the
	// Schedule's default. Check itself applies Timeout too.
	Interval  time.Duration
	Timeout   time.Duration
	Rise      int
	Fall      int
	Jitter    float64
	StartDown bool
}

var _ interface {
	Checker
	Scheduler
} = TCPCheck{}

// Schedule returns the [Schedule] made of c's Interval, Timeout, Rise,
// Fall, Jitter and StartDown fields.
func (c TCPCheck) Schedule() Schedule {
	return Schedule(c) // the fields are the same

}

// Validate reports an invalid [TCPCheck.Schedule], naming its field. The
// zero TCPCheck is valid.
func (c TCPCheck) Validate() error {
	return c.Schedule().Validate()
}

// Check opens a TCP connection to target and closes it. It returns when
// the connection opens or fails, when Timeout has passed, or when ctx
// ends, whichever comes first.
func (c TCPCheck) Check(ctx context.Context, target *url.URL) error {
	s := c.Schedule()
	if err := s.Validate(); err != nil {
		return err
	}
	s = s.WithDefaults()
	addr, err := tcpAddr(target)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	d := net.Dialer{KeepAlive: -1}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("health: tcp %s: %w", addr, err)
	}
	conn.Close()
	return nil
}

// tcpAddr returns the host:port of target, with the default port of its
// scheme when it has none.
func tcpAddr(target *url.URL) (string, error) {
	host, port := target.Hostname(), target.Port()
	if host == "" {
		return "", fmt.Errorf("health: tcp: target %q has no host", target.Redacted())
	}
	if port == "" {
		switch target.Scheme {
		case "http", "ws":
			port = "80"
		case "https", "wss":
			port = "443"
		default:
			return "", fmt.Errorf("health: tcp: target %q has no port", target.Redacted())
		}
	}
	return net.JoinHostPort(host, port), nil
}
