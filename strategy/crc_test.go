package strategy

import (
	"fmt"
	"hash/crc32"
	"strings"
	"testing"
)

// TestKeyCRC checks keyCRC against hash/crc32 at every length either side
// of its 4-byte, 8-byte and long-key boundaries, and on the §4.1 vectors.
func TestKeyCRC(t *testing.T) {
	for _, v := range []struct {
		key  string
		want uint32
	}{
		{"a", 0xe8b7be43},
		{"user42", 0x7c2fbeb6},
		{"/index.html", 0xea224b42},
		{"192.168.1.10", 0x0f87d6b7},
		{"session-0001", 0x3eff4761},
		{"", 0},
	} {
		if got := keyCRC(v.key); got != v.want {
			t.Errorf("keyCRC(%q) = %08x; want %08x", v.key, got, v.want)
		}
	}
	var b strings.Builder
	for n := range 3 * keyCRCLong {
		s := b.String()
		if got, want := keyCRC(s), crc32.ChecksumIEEE([]byte(s)); got != want {
			t.Fatalf("keyCRC of %d bytes = %08x; want %08x", n, got, want)
		}
		b.WriteByte(byte(n*131 + 7))
	}
}

func FuzzKeyCRC(f *testing.F) {
	f.Add("user-00000007919")
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := keyCRC(s), crc32.ChecksumIEEE([]byte(s)); got != want {
			t.Fatalf("keyCRC(%q) = %08x; want %08x", s, got, want)
		}
	})
}

func BenchmarkKeyCRC(b *testing.B) {
	for _, n := range []int{8, 16, 24, 40} {
		k := strings.Repeat("k", n)
		b.Run(fmt.Sprint("tinylb/", n), func(b *testing.B) {
			for b.Loop() {
				sinkCRC += keyCRC(k)
			}
		})
		kb := []byte(k)
		b.Run(fmt.Sprint("hash-crc32/", n), func(b *testing.B) {
			for b.Loop() {
				sinkCRC += crc32.ChecksumIEEE(kb)
			}
		})
	}
}

var sinkCRC uint32
