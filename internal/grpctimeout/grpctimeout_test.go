package grpctimeout

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestFormat(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "1n"},
		{0, "1n"},
		{1, "1n"},
		{99999999, "99999999n"},
		{100000000, "100000u"},
		{100000001, "100001u"}, // rounded up: the server must not give up first
		{2 * time.Second, "2000000u"},
		{100 * time.Second, "100000m"},
		{100000 * time.Second, "100000S"},
		{1e8 * time.Second, "1666667M"},
		{time.Duration(1<<63 - 1), "2562048H"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, Format(tt.d), "Format(%d)", int64(tt.d))
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		v    string
		want time.Duration
		ok   bool
	}{
		{"1n", 1, true},
		{"200m", 200 * time.Millisecond, true},
		{"99999999u", 99999999 * time.Microsecond, true},
		{"5S", 5 * time.Second, true},
		{"3M", 3 * time.Minute, true},
		{"2H", 2 * time.Hour, true},
		{"0m", 0, true},
		{"99999999H", math.MaxInt64, true}, // longer than a Duration
		{"", 0, false},
		{"m", 0, false},
		{"100", 0, false},        // no unit
		{"100x", 0, false},       // unknown unit
		{"100000000m", 0, false}, // 9 digits
		{"-1m", 0, false},
		{"+1m", 0, false},
		{"1 m", 0, false},
		{"1.5S", 0, false},
	}
	for _, tt := range tests {
		d, ok := Parse(tt.v)
		assert.Equal(t, tt.ok, ok, "Parse(%q) ok", tt.v)
		assert.Equal(t, tt.want, d, "Parse(%q)", tt.v)
	}
}

// Every value Format writes, Parse reads back as at least the duration
// formatted (Format rounds up) and less than one unit more.
func TestFormatParseRoundTrip(t *testing.T) {
	for _, d := range []time.Duration{1, 999, 123456789, 7 * time.Second, 36 * time.Hour, math.MaxInt64} {
		got, ok := Parse(Format(d))
		assert.True(t, ok, "Parse(Format(%d))", int64(d))
		assert.GreaterOrEqual(t, got, d)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"1n", "200m", "99999999H", "", "1.5S", "-1m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := Parse(v)
		if !ok {
			return
		}
		assert.GreaterOrEqual(t, d, time.Duration(0), "Parse(%q)", v)
		back, ok := Parse(Format(d))
		assert.True(t, ok)
		assert.GreaterOrEqual(t, back, d, "Parse(Format(Parse(%q)))", v)
	})
}
