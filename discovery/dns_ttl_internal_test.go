package discovery

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
)

// response builds a DNS response with one question and an A record per
// TTL, the answers' names compressed to the question's.
func response(rcode byte, ttls ...uint32) []byte {
	m := []byte{0xAB, 0xCD, 0x81, 0x80 | rcode, 0, 1, 0, byte(len(ttls)), 0, 0, 0, 0}
	m = append(m, 3, 's', 'v', 'c', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1)
	for _, ttl := range ttls {
		m = append(m, 0xC0, 12, 0, 1, 0, 1)
		m = binary.BigEndian.AppendUint32(m, ttl)
		m = append(m, 0, 4, 192, 0, 2, 1)
	}
	return m
}

func TestParseResponse(t *testing.T) {
	rcode, ttl, has, ok := parseResponse(response(0, 300, 20, 60))
	assert.True(t, ok)
	assert.Equal(t, 0, rcode)
	assert.True(t, has)
	assert.EqualValues(t, 20, ttl, "the smallest TTL")

	rcode, _, has, ok = parseResponse(response(3))
	assert.True(t, ok)
	assert.Equal(t, 3, rcode)
	assert.False(t, has)

	_, ttl, _, _ = parseResponse(response(0, 1<<31+5, 100))
	assert.Zero(t, ttl, "RFC 2181 §8: a TTL with the top bit set counts as 0")

	full := response(0, 30)
	for n := range len(full) {
		if _, _, _, ok := parseResponse(full[:n]); ok {
			t.Errorf("a response cut at %d of %d bytes parsed", n, len(full))
		}
	}
	query := response(0)
	query[2] &^= 0x80
	_, _, _, ok = parseResponse(query)
	assert.False(t, ok, "a query is no response")
}

// FuzzParseResponse: no input makes parseResponse panic or read out of
// bounds.
func FuzzParseResponse(f *testing.F) {
	f.Add(response(0, 300, 20))
	f.Add(response(3))
	f.Add([]byte{0, 0, 0x80, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0xC0})
	f.Fuzz(func(t *testing.T, m []byte) {
		parseResponse(m)
		skipName(m, 0)
	})
}
