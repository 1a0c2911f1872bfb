package health

// The wire format of one gRPC health check, written by hand so that the
// package needs neither grpc-go nor protobuf: a check is one unary call
// whose request and response have one field each.
//
// Sources:
//   - grpc.health.v1 (grpc/grpc-proto, grpc/health/v1/health.proto):
//     HealthCheckRequest{string service = 1} and HealthCheckResponse
//     {ServingStatus status = 1}, with UNKNOWN = 0, SERVING = 1,
//     NOT_SERVING = 2, SERVICE_UNKNOWN = 3.
//   - The protobuf encoding (protobuf.dev/programming-guides/encoding):
//     a field is a varint tag (field number << 3 | wire type) and a value
//     whose wire type says how to skip it: 0 varint, 1 eight bytes, 2 a
//     varint length and that many bytes, 5 four bytes, 3 and 4 the start
//     and end of a group. proto3 leaves fields at their zero value out, and
//     the last value of a scalar field seen wins.
//   - gRPC over HTTP/2 (grpc/grpc, doc/PROTOCOL-HTTP2.md): each message is
//     a Length-Prefixed-Message, a Compressed-Flag byte and a four-byte
//     big-endian Message-Length; grpc-timeout is at most 8 digits and a
//     unit; the status codes are those of doc/statuscodes.md.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
)

const (
	// grpcHealthPath is the :path of grpc.health.v1.Health/Check.
	grpcHealthPath = "/grpc.health.v1.Health/Check"
	// grpcMaxResponse bounds the HealthCheckResponse a check reads. A
	// response is 2 bytes today; the bound leaves room for fields added
	// later while keeping a server that sends a huge or bogus length from
	// making a check allocate or read much.
	grpcMaxResponse = 16 << 10
	// protoMaxDepth bounds the nesting of unknown groups that are skipped,
	// so that a hostile message cannot recurse deeply.
	protoMaxDepth = 16
)

// servingStatus is grpc.health.v1.HealthCheckResponse.ServingStatus.
type servingStatus int32

const (
	statusUnknown        servingStatus = 0
	statusServing        servingStatus = 1
	statusNotServing     servingStatus = 2
	statusServiceUnknown servingStatus = 3 // sent by Watch only, but a server may
)

func (s servingStatus) String() string {
	switch s {
	case statusUnknown:
		return "UNKNOWN"
	case statusServing:
		return "SERVING"
	case statusNotServing:
		return "NOT_SERVING"
	case statusServiceUnknown:
		return "SERVICE_UNKNOWN"
	}
	return "ServingStatus(" + strconv.Itoa(int(s)) + ")"
}

// grpcRequest returns the Length-Prefixed-Message of the
// HealthCheckRequest for service: uncompressed, and empty for the empty
// service, which proto3 leaves out.
func grpcRequest(service string) []byte {
	var msg []byte
	if service != "" {
		msg = append(msg, 1<<3|2) // field 1, wire type 2 (LEN)
		msg = binary.AppendUvarint(msg, uint64(len(service)))
		msg = append(msg, service...)
	}
	frame := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(frame[1:], uint32(len(msg)))
	return append(frame, msg...)
}

// errNoMessage is returned by readGRPCMessage for a body that ended
// before any message began.
var errNoMessage = errors.New("no response message")

// readGRPCMessage reads the one Length-Prefixed-Message of a unary
// response from r, then reads on to the end of r, which is where the
// transport takes the trailers from. It refuses a compressed message (a
// check asks for none), a length over limit (before reading the message),
// a message cut short and a second message.
func readGRPCMessage(r io.Reader, limit int) ([]byte, error) {
	var prefix [5]byte
	switch n, err := io.ReadFull(r, prefix[:]); {
	case err == io.EOF:
		return nil, errNoMessage
	case err == io.ErrUnexpectedEOF:
		return nil, fmt.Errorf("message prefix cut short after %d of 5 bytes", n)
	case err != nil:
		return nil, err
	}
	switch prefix[0] {
	case 0:
	case 1:
		return nil, errors.New("compressed message, though the check asked for none")
	default:
		return nil, fmt.Errorf("invalid compressed flag %d", prefix[0])
	}
	size := binary.BigEndian.Uint32(prefix[1:])
	if uint64(size) > uint64(limit) {
		return nil, fmt.Errorf("message of %d bytes, over the limit of %d", size, limit)
	}
	msg := make([]byte, size)
	if n, err := io.ReadFull(r, msg); err != nil {
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			return nil, fmt.Errorf("message cut short after %d of %d bytes", n, size)
		}
		return nil, err
	}
	var more [1]byte
	for {
		n, err := r.Read(more[:])
		if n > 0 {
			return nil, errors.New("more than one message in a unary response")
		}
		if err == io.EOF {
			return msg, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// decodeHealthResponse decodes a HealthCheckResponse. Fields other than
// status, and a status field of another wire type, are skipped as
// protobuf parsers skip unknown fields; a message that cannot be parsed
// is an error. A message without status has status UNKNOWN (proto3's
// zero value).
func decodeHealthResponse(msg []byte) (servingStatus, error) {
	status := statusUnknown
	for len(msg) > 0 {
		num, typ, n := protoTag(msg)
		if n <= 0 {
			return 0, errors.New("malformed HealthCheckResponse: bad field tag")
		}
		msg = msg[n:]
		if num == 1 && typ == 0 {
			v, n := protoVarint(msg)
			if n <= 0 {
				return 0, errors.New("malformed HealthCheckResponse: bad status varint")
			}
			status = servingStatus(int32(v)) // an enum is an int32 on the wire
			msg = msg[n:]
			continue
		}
		n = protoSkip(msg, num, typ, 0)
		if n < 0 {
			return 0, fmt.Errorf("malformed HealthCheckResponse: bad field %d of wire type %d", num, typ)
		}
		msg = msg[n:]
	}
	return status, nil
}

// protoVarint decodes the varint at the start of b and returns it and its
// length, or a length <= 0 for a varint that is cut short or longer than
// 64 bits.
func protoVarint(b []byte) (uint64, int) {
	var v uint64
	for i := 0; i < len(b) && i < binary.MaxVarintLen64; i++ {
		c := b[i]
		if i == binary.MaxVarintLen64-1 && c > 1 {
			return 0, -1 // more than 64 bits
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, i + 1
		}
	}
	return 0, -1
}

// protoTag decodes the field tag at the start of b: its field number, its
// wire type and its length, or a length <= 0 for a tag that is malformed
// or names field 0 or a number above 2^29-1.
func protoTag(b []byte) (num uint64, typ byte, n int) {
	v, n := protoVarint(b)
	if n <= 0 || v>>3 == 0 || v>>3 > 1<<29-1 {
		return 0, 0, -1
	}
	return v >> 3, byte(v & 7), n
}

// protoSkip returns the length of the value of field num, of wire type
// typ, at the start of b (for a group, up to and including its end tag),
// or -1 when it is cut short or malformed. depth counts the groups being
// skipped around it.
func protoSkip(b []byte, num uint64, typ byte, depth int) int {
	switch typ {
	case 0: // varint
		_, n := protoVarint(b)
		return n
	case 1: // i64
		if len(b) < 8 {
			return -1
		}
		return 8
	case 2: // LEN
		l, n := protoVarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return -1
		}
		return n + int(l)
	case 5: // i32
		if len(b) < 4 {
			return -1
		}
		return 4
	case 3: // start of a group: skip fields up to its matching end
		if depth >= protoMaxDepth {
			return -1
		}
		for i := 0; i < len(b); {
			fnum, ftyp, n := protoTag(b[i:])
			if n <= 0 {
				return -1
			}
			i += n
			if ftyp == 4 {
				if fnum != num {
					return -1
				}
				return i
			}
			m := protoSkip(b[i:], fnum, ftyp, depth+1)
			if m < 0 {
				return -1
			}
			i += m
		}
		return -1 // no end tag
	}
	return -1 // an end of group with no start, or wire type 6 or 7
}

// grpcCodes names the gRPC status codes (doc/statuscodes.md).
var grpcCodes = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
	"NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
	"FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
	"INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
}

// grpcCodeLabel returns the name and number of status code c, as
// "NOT_FOUND (5)", or only the number for a code that has no name.
func grpcCodeLabel(c uint64) string {
	n := strconv.FormatUint(c, 10)
	if c < uint64(len(grpcCodes)) {
		return grpcCodes[c] + " (" + n + ")"
	}
	return n
}
