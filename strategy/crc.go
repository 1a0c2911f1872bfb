package strategy

import (
	"encoding/binary"
	"hash/crc32"
	"unsafe"
)

// Request keys are short (a session id, a user id, an address), and for
// short inputs hash/crc32 spends most of its time byte by byte: it takes
// 8-byte steps only while more than 8 bytes remain and then finishes one
// byte at a time, so a 16-byte key costs it 8 table steps in series after
// its one wide step. keyCRC takes every whole 8-byte step, then a 4-byte
// step, and goes byte by byte for at most 3 bytes, over the same slicing
// tables (Intel's slicing-by-8). From 64 bytes on, hash/crc32's
// carry-less-multiply code is faster, and keyCRC hands the key to it.

// crcTables is the IEEE CRC-32 slicing-by-8 table set: crcTables[0] is the
// byte-at-a-time table, and crcTables[k][b] is the CRC of byte b followed by
// k zero bytes.
var crcTables = func() *[8][256]uint32 {
	t := new([8][256]uint32)
	t[0] = *crc32.IEEETable
	for b := range 256 {
		c := t[0][b]
		for k := 1; k < 8; k++ {
			c = t[0][c&0xff] ^ c>>8
			t[k][b] = c
		}
	}
	return t
}()

// keyCRCLong is the length from which keyCRC defers to hash/crc32.
const keyCRCLong = 64

// keyCRC returns crc32.ChecksumIEEE(k) without copying k.
func keyCRC(k string) uint32 {
	if len(k) >= keyCRCLong {
		return crc32.Update(0, crc32.IEEETable, unsafe.Slice(unsafe.StringData(k), len(k)))
	}
	t := crcTables
	crc := ^uint32(0)
	for len(k) >= 8 {
		x := crc ^ leU32(k)
		crc = t[7][x&0xff] ^ t[6][x>>8&0xff] ^ t[5][x>>16&0xff] ^ t[4][x>>24] ^
			t[3][k[4]] ^ t[2][k[5]] ^ t[1][k[6]] ^ t[0][k[7]]
		k = k[8:]
	}
	if len(k) >= 4 {
		x := crc ^ leU32(k)
		crc = t[3][x&0xff] ^ t[2][x>>8&0xff] ^ t[1][x>>16&0xff] ^ t[0][x>>24]
		k = k[4:]
	}
	for i := 0; i < len(k); i++ {
		crc = t[0][byte(crc)^k[i]] ^ crc>>8
	}
	return ^crc
}

// leU32 reads the first four bytes of s as a little-endian uint32.
func leU32(s string) uint32 {
	return binary.LittleEndian.Uint32(unsafe.Slice(unsafe.StringData(s), 4))
}
