package health

import (
	"bytes"
	"encoding/binary"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGRPCRequest(t *testing.T) {
	long := strings.Repeat("s", 200) // a length of two varint bytes
	tests := []struct {
		service string
		want    []byte
	}{
		{"", []byte{0, 0, 0, 0, 0}}, // proto3 leaves the empty string out
		{"a", []byte{0, 0, 0, 0, 3, 0x0a, 1, 'a'}},
		{"grpc.health.v1.Health", append([]byte{0, 0, 0, 0, 23, 0x0a, 21}, "grpc.health.v1.Health"...)},
		{long, append([]byte{0, 0, 0, 0, 203, 0x0a, 0xc8, 0x01}, long...)},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, grpcRequest(tt.service), "service %q", tt.service)
	}
}

// varint encodes v as a protobuf varint.
func varint(v uint64) []byte { return binary.AppendUvarint(nil, v) }

// cat concatenates byte slices.
func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestDecodeHealthResponse(t *testing.T) {
	const (
		statusTag = 1 << 3 // field 1, wire type 0 (varint)
		deep      = protoMaxDepth + 1
	)
	tests := []struct {
		name string
		msg  []byte
		want servingStatus
		err  string // a substring of the error; "" for none
	}{
		{"empty is UNKNOWN", nil, statusUnknown, ""},
		{"SERVING", []byte{statusTag, 1}, statusServing, ""},
		{"NOT_SERVING", []byte{statusTag, 2}, statusNotServing, ""},
		{"SERVICE_UNKNOWN", []byte{statusTag, 3}, statusServiceUnknown, ""},
		{"explicit UNKNOWN", []byte{statusTag, 0}, statusUnknown, ""},
		{"value without a name", []byte{statusTag, 7}, 7, ""},
		{"last value wins", []byte{statusTag, 2, statusTag, 1}, statusServing, ""},
		{"negative enum, ten bytes", cat([]byte{statusTag}, varint(uint64(1<<64-1))), -1, ""},
		{"non-minimal varint", []byte{statusTag, 0x81, 0x80, 0x00}, statusServing, ""},
		{"unknown varint field", []byte{2 << 3, 0x96, 0x01, statusTag, 1}, statusServing, ""},
		{"unknown i64 field", []byte{3<<3 | 1, 1, 2, 3, 4, 5, 6, 7, 8, statusTag, 1}, statusServing, ""},
		{"unknown LEN field", []byte{statusTag, 1, 4<<3 | 2, 2, 'h', 'i'}, statusServing, ""},
		{"unknown LEN field holding a status tag", []byte{statusTag, 1, 4<<3 | 2, 2, statusTag, 2}, statusServing, ""},
		{"unknown i32 field", []byte{5<<3 | 5, 1, 2, 3, 4, statusTag, 1}, statusServing, ""},
		{"unknown group", []byte{6<<3 | 3, statusTag, 2, 7<<3 | 3, 7<<3 | 4, 6<<3 | 4, statusTag, 1}, statusServing, ""},
		{"large field number", cat(varint((1<<29-1)<<3), []byte{1, statusTag, 1}), statusServing, ""},
		{"status as LEN is unknown", []byte{1<<3 | 2, 1, 1}, statusUnknown, ""},
		{"status as i32 is unknown", []byte{statusTag, 1, 1<<3 | 5, 2, 0, 0, 0}, statusServing, ""},

		{"status varint cut short", []byte{statusTag}, 0, "bad status varint"},
		{"status varint cut short after a byte", []byte{statusTag, 0x80}, 0, "bad status varint"},
		{"varint over 64 bits", []byte{statusTag, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, 0, "bad status varint"},
		{"varint of eleven bytes", []byte{statusTag, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, 0, "bad status varint"},
		{"field 0", []byte{0, 1}, 0, "bad field tag"},
		{"field number over 2^29-1", cat(varint(1<<29<<3), []byte{1}), 0, "bad field tag"},
		{"tag cut short", []byte{0x80}, 0, "bad field tag"},
		{"wire type 6", []byte{2<<3 | 6, 1}, 0, "bad field 2 of wire type 6"},
		{"wire type 7", []byte{2<<3 | 7, 1}, 0, "bad field 2 of wire type 7"},
		{"LEN longer than the message", []byte{4<<3 | 2, 5, 'a'}, 0, "bad field 4 of wire type 2"},
		{"LEN of 2^64-1", cat([]byte{4<<3 | 2}, varint(1<<64-1), []byte{'a'}), 0, "bad field 4"},
		{"LEN length cut short", []byte{4<<3 | 2, 0x80}, 0, "bad field 4"},
		{"i64 cut short", []byte{3<<3 | 1, 1, 2, 3}, 0, "bad field 3 of wire type 1"},
		{"i32 cut short", []byte{5<<3 | 5, 1, 2, 3}, 0, "bad field 5 of wire type 5"},
		{"unknown varint cut short", []byte{2 << 3, 0x80}, 0, "bad field 2 of wire type 0"},
		{"group without end", []byte{6<<3 | 3, statusTag, 1}, 0, "bad field 6 of wire type 3"},
		{"group with another field's end", []byte{6<<3 | 3, 7<<3 | 4}, 0, "bad field 6"},
		{"group holding a bad field", []byte{6<<3 | 3, 2<<3 | 6, 6<<3 | 4}, 0, "bad field 6"},
		{"end of group without start", []byte{6<<3 | 4, statusTag, 1}, 0, "bad field 6 of wire type 4"},
		{"groups nested too deep", cat(bytes.Repeat([]byte{6<<3 | 3}, deep), bytes.Repeat([]byte{6<<3 | 4}, deep)), 0, "bad field 6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeHealthResponse(tt.msg)
			if tt.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.err)
				assert.Contains(t, err.Error(), "malformed HealthCheckResponse")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// Nested groups within the bound are skipped.
func TestDecodeHealthResponseNestedGroups(t *testing.T) {
	n := protoMaxDepth
	msg := cat(bytes.Repeat([]byte{6<<3 | 3}, n), bytes.Repeat([]byte{6<<3 | 4}, n), []byte{1 << 3, 1})
	got, err := decodeHealthResponse(msg)
	require.NoError(t, err)
	assert.Equal(t, statusServing, got)
}

// FuzzDecodeHealthResponse: no input makes the decoder panic or loop, and
// appending a well-formed unknown field to a message that decodes leaves
// its status as it was.
func FuzzDecodeHealthResponse(f *testing.F) {
	for _, seed := range [][]byte{
		nil, {8, 1}, {8, 2, 8, 1}, {0x33, 8, 2, 0x34, 8, 1}, {0x22, 5, 'a'}, {0x80}, {8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		got, err := decodeHealthResponse(msg)
		if err != nil {
			return
		}
		again, err := decodeHealthResponse(cat(msg, []byte{9<<3 | 2, 3, 'x', 'y', 'z'}))
		if err != nil || again != got {
			t.Fatalf("with an unknown field appended: %v, %v; want %v, nil", again, err, got)
		}
	})
}

// frame returns msg as a Length-Prefixed-Message with the given flag.
func frame(flag byte, msg []byte) []byte {
	p := []byte{flag, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(p[1:], uint32(len(msg)))
	return append(p, msg...)
}

// readCounter counts the bytes read through it.
type readCounter struct {
	r io.Reader
	n int
}

func (c *readCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestReadGRPCMessage(t *testing.T) {
	serving := []byte{8, 1}
	tests := []struct {
		name string
		body []byte
		want []byte
		err  string // a substring of the error; "" for none
	}{
		{"one message", frame(0, serving), serving, ""},
		{"empty message", frame(0, nil), []byte{}, ""},
		{"message at the limit", frame(0, make([]byte, 64)), make([]byte, 64), ""},
		{"no message", nil, nil, "no response message"},
		{"prefix cut short", []byte{0, 0, 0}, nil, "message prefix cut short after 3 of 5 bytes"},
		{"compressed", frame(1, serving), nil, "compressed message, though the check asked for none"},
		{"bad flag", frame(2, serving), nil, "invalid compressed flag 2"},
		{"over the limit", frame(0, make([]byte, 65)), nil, "message of 65 bytes, over the limit of 64"},
		{"length of 2^32-1", []byte{0, 0xff, 0xff, 0xff, 0xff, 8, 1}, nil, "message of 4294967295 bytes, over the limit of 64"},
		{"message cut short", frame(0, serving)[:6], nil, "message cut short after 1 of 2 bytes"},
		{"message missing", frame(0, serving)[:5], nil, "message cut short after 0 of 2 bytes"},
		{"two messages", cat(frame(0, serving), frame(0, serving)), nil, "more than one message in a unary response"},
		{"one byte more", cat(frame(0, serving), []byte{0}), nil, "more than one message"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// One byte at a time, as a stream may deliver it.
			got, err := readGRPCMessage(iotest.OneByteReader(bytes.NewReader(tt.body)), 64)
			if tt.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// A length over the limit is refused from the prefix alone: nothing of the
// message is read or allocated.
func TestReadGRPCMessageRefusesBeforeReading(t *testing.T) {
	r := &readCounter{r: bytes.NewReader(frame(0, make([]byte, 1<<20)))}
	_, err := readGRPCMessage(r, grpcMaxResponse)
	require.ErrorContains(t, err, "over the limit of 16384")
	assert.Equal(t, 5, r.n, "bytes read")
}

// A read error other than an early end is returned as it is.
func TestReadGRPCMessageReadError(t *testing.T) {
	_, err := readGRPCMessage(iotest.ErrReader(io.ErrClosedPipe), 64)
	assert.ErrorIs(t, err, io.ErrClosedPipe)
	_, err = readGRPCMessage(io.MultiReader(bytes.NewReader(frame(0, []byte{8, 1})), iotest.ErrReader(io.ErrClosedPipe)), 64)
	assert.ErrorIs(t, err, io.ErrClosedPipe, "an error after the message")
}

func TestGRPCCodeLabel(t *testing.T) {
	assert.Equal(t, "OK (0)", grpcCodeLabel(0))
	assert.Equal(t, "NOT_FOUND (5)", grpcCodeLabel(5))
	assert.Equal(t, "UNIMPLEMENTED (12)", grpcCodeLabel(12))
	assert.Equal(t, "UNAUTHENTICATED (16)", grpcCodeLabel(16))
	assert.Equal(t, "17", grpcCodeLabel(17))
}

func TestServingStatusString(t *testing.T) {
	assert.Equal(t, "SERVING", statusServing.String())
	assert.Equal(t, "NOT_SERVING", statusNotServing.String())
	assert.Equal(t, "SERVICE_UNKNOWN", statusServiceUnknown.String())
	assert.Equal(t, "UNKNOWN", statusUnknown.String())
	assert.Equal(t, "ServingStatus(-1)", servingStatus(-1).String())
}
