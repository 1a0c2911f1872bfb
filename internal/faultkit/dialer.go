package faultkit

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"
)

// DialFault is what a [Dialer] does when asked to dial an address.
type DialFault int

const (
	// DialPass dials the address.
	DialPass DialFault = iota
	// DialRefuse fails at once with ECONNREFUSED, as a closed port does.
	DialRefuse
	// DialTimeout waits until the dial's context ends or the Dialer's
	// TimeoutAfter has passed, then fails with a timeout, as a blackholed
	// address does.
	DialTimeout
)

// Dialer is a DialContext hook for an http.Transport that records every
// address it is asked to dial and injects refusals and timeouts per
// address. It never dials outside loopback: any other address is refused
// (and recorded), so a test can never send traffic off the machine even
// when the code under test is tricked into trying.
//
// The zero Dialer dials everything on loopback.
type Dialer struct {
	// Base dials the addresses that pass; zero means a net.Dialer with a
	// 5 s timeout.
	Base net.Dialer
	// TimeoutAfter bounds the wait of DialTimeout; zero means only the
	// context ends it.
	TimeoutAfter time.Duration

	mu      sync.Mutex
	faults  map[string]DialFault
	targets []string
	counts  map[string]int
}

// Set makes dials to addr (host:port, as the transport asks) behave as f.
func (d *Dialer) Set(addr string, f DialFault) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.faults == nil {
		d.faults = make(map[string]DialFault)
	}
	if f == DialPass {
		delete(d.faults, addr)
		return
	}
	d.faults[addr] = f
}

// Refuse makes dials to addr fail with ECONNREFUSED.
func (d *Dialer) Refuse(addr string) { d.Set(addr, DialRefuse) }

// Timeout makes dials to addr time out.
func (d *Dialer) Timeout(addr string) { d.Set(addr, DialTimeout) }

// Heal makes dials to addr pass again.
func (d *Dialer) Heal(addr string) { d.Set(addr, DialPass) }

// DialContext records addr and dials it, or fails as its fault says.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.targets = append(d.targets, addr)
	if d.counts == nil {
		d.counts = make(map[string]int)
	}
	d.counts[addr]++
	f := d.faults[addr]
	d.mu.Unlock()

	if !IsLoopback(addr) {
		return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("faultkit: refusing to dial %q outside loopback: %w", addr, syscall.ECONNREFUSED)}
	}
	switch f {
	case DialRefuse:
		return nil, &net.OpError{Op: "dial", Net: network, Addr: tcpAddr(addr), Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	case DialTimeout:
		var tc <-chan time.Time
		if d.TimeoutAfter > 0 {
			t := time.NewTimer(d.TimeoutAfter)
			defer t.Stop()
			tc = t.C
		}
		select {
		case <-ctx.Done():
			return nil, &net.OpError{Op: "dial", Net: network, Addr: tcpAddr(addr), Err: ctx.Err()}
		case <-tc:
			return nil, &net.OpError{Op: "dial", Net: network, Addr: tcpAddr(addr), Err: timeoutError{}}
		}
	}
	return d.Base.DialContext(ctx, network, addr)
}

// timeoutError is the error of a dial that timed out.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func tcpAddr(addr string) net.Addr {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil
	}
	return net.TCPAddrFromAddrPort(ap)
}

// Targets returns every address dialed (or refused), in order.
func (d *Dialer) Targets() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.targets)
}

// Count returns the number of dials of addr.
func (d *Dialer) Count(addr string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.counts[addr]
}

// Total returns the number of dials.
func (d *Dialer) Total() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.targets)
}

// Outside returns the distinct dialed addresses not in allowed: the I3
// breaches of a test whose pool is allowed.
func (d *Dialer) Outside(allowed ...string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for a := range d.counts {
		if !slices.Contains(allowed, a) {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}

// Reset forgets the recorded dials.
func (d *Dialer) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.targets = nil
	d.counts = nil
}

// IsLoopback reports whether addr (host:port or host) is a loopback IP
// address or "localhost".
func IsLoopback(addr string) bool {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}
