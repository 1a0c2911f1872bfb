// Package grpctimeout reads and writes the grpc-timeout header, the
// deadline a gRPC client gives its call (grpc/grpc PROTOCOL-HTTP2.md,
// Requests: TimeoutValue, at most 8 ASCII digits, and a TimeoutUnit, one
// of H M S m u n).
package grpctimeout

import (
	"math"
	"strconv"
	"time"
)

// most is the largest TimeoutValue: 8 digits.
const most = 1e8 - 1

// units are the TimeoutUnits, finest first.
var units = [...]struct {
	d    time.Duration
	unit byte
}{
	{time.Nanosecond, 'n'},
	{time.Microsecond, 'u'},
	{time.Millisecond, 'm'},
	{time.Second, 'S'},
	{time.Minute, 'M'},
	{time.Hour, 'H'},
}

// Format formats d as a grpc-timeout value: d in the finest unit whose
// count fits in 8 digits, rounded up so that the server never gives up
// before the caller does. A d of 0 or less is the shortest timeout, 1n.
func Format(d time.Duration) string {
	if d <= 0 {
		return "1n"
	}
	for _, u := range units[:len(units)-1] {
		if n := ceilDiv(d, u.d); n <= most {
			return strconv.FormatInt(int64(n), 10) + string(u.unit)
		}
	}
	// The longest Duration is 2562047 hours and some, which fits.
	return strconv.FormatInt(int64(ceilDiv(d, time.Hour)), 10) + "H"
}

// Parse reads a grpc-timeout value. ok is false if v is not one (empty,
// more than 8 digits, a sign, an unknown unit): the call then has no
// deadline a proxy can act on. A timeout longer than a Duration holds
// reads as the longest Duration.
func Parse(v string) (d time.Duration, ok bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v)-1; i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	for _, u := range units {
		if u.unit == v[len(v)-1] {
			if n > int64(math.MaxInt64/u.d) {
				return math.MaxInt64, true
			}
			return time.Duration(n) * u.d, true
		}
	}
	return 0, false
}

// ceilDiv returns d/unit rounded up, without overflowing.
func ceilDiv(d, unit time.Duration) time.Duration {
	n := d / unit
	if d%unit != 0 {
		n++
	}
	return n
}
