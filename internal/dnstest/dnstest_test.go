package dnstest

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// The standard library's resolver reads the server's A and AAAA answers,
// and follows a change.
func TestAddrs(t *testing.T) {
	s := Start(t)
	s.SetAddrs("svc.test", 30, "127.0.0.2", "::1", "127.0.0.3")
	r := s.Resolver()
	got, err := r.LookupNetIP(ctx(t), "ip", "svc.test.")
	require.NoError(t, err)
	slices.SortFunc(got, netip.Addr.Compare)
	assert.Equal(t, []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3"), netip.MustParseAddr("::1")}, got)
	assert.Equal(t, 1, s.Queries("svc.test", TypeA))
	assert.Equal(t, 1, s.Queries("SVC.test.", TypeAAAA))

	s.SetAddrs("svc.test", 30, "127.0.0.9")
	got, err = r.LookupNetIP(ctx(t), "ip4", "svc.test.")
	require.NoError(t, err)
	assert.Equal(t, []netip.Addr{netip.MustParseAddr("127.0.0.9")}, got)
}

// SRV records come back with their priority, weight, port and target.
func TestSRV(t *testing.T) {
	s := Start(t)
	s.SetSRV("_http._tcp.svc.test", 60, SRV{Priority: 10, Weight: 5, Port: 8080, Target: "a.svc.test"}, SRV{Priority: 20, Weight: 0, Port: 8081, Target: "b.svc.test."})
	_, srvs, err := s.Resolver().LookupSRV(ctx(t), "http", "tcp", "svc.test.")
	require.NoError(t, err)
	require.Len(t, srvs, 2)
	assert.Equal(t, net.SRV{Target: "a.svc.test.", Port: 8080, Priority: 10, Weight: 5}, *srvs[0])
	assert.Equal(t, net.SRV{Target: "b.svc.test.", Port: 8081, Priority: 20, Weight: 0}, *srvs[1])
}

// Unknown names are NXDOMAIN, known names without records of the type
// NODATA, and Fail forces an answer until Heal.
func TestFailures(t *testing.T) {
	s := Start(t)
	r := s.Resolver()
	s.SetAddrs("v4.test", 30, "127.0.0.2")

	_, err := r.LookupNetIP(ctx(t), "ip", "nope.test.")
	var de *net.DNSError
	require.True(t, errors.As(err, &de), "%v", err)
	assert.True(t, de.IsNotFound)

	got, err := r.LookupNetIP(ctx(t), "ip", "v4.test.") // AAAA is NODATA
	require.NoError(t, err)
	assert.Len(t, got, 1)

	s.Fail("v4.test", RcodeServFail)
	_, err = r.LookupNetIP(ctx(t), "ip", "v4.test.")
	require.True(t, errors.As(err, &de), "%v", err)
	assert.False(t, de.IsNotFound)

	s.Fail("v4.test", RcodeSuccess)
	_, err = r.LookupNetIP(ctx(t), "ip", "v4.test.")
	require.Error(t, err, "an empty answer finds no address")

	s.Heal("v4.test")
	_, err = r.LookupNetIP(ctx(t), "ip", "v4.test.")
	require.NoError(t, err)
}

// Malformed queries get FORMERR; responses are ignored.
func TestMalformed(t *testing.T) {
	s := Start(t)
	assert.Nil(t, s.answer([]byte{1, 2, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0}, true), "a response is dropped")
	m := s.answer([]byte{1, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1}, false)
	require.Len(t, m, 12)
	assert.Equal(t, byte(rcodeFormErr), m[3]&0x0F)
	assert.Equal(t, []byte{1, 2}, m[:2])
}

// A truncated UDP answer sends the resolver to TCP, which answers whole.
func TestTruncateToTCP(t *testing.T) {
	s := Start(t)
	s.SetAddrs("svc.test", 30, "127.0.0.2")
	s.Truncate("svc.test", true)
	got, err := s.Resolver().LookupNetIP(ctx(t), "ip4", "svc.test.")
	require.NoError(t, err)
	assert.Equal(t, []netip.Addr{netip.MustParseAddr("127.0.0.2")}, got)
	assert.Equal(t, 2, s.Queries("svc.test", TypeA), "once over UDP, once over TCP")
}
