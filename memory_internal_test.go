package lb

import (
	"bytes"
	"math"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The default bound on body memory is 64 MiB, or an eighth of GOMEMLIMIT
// when that is set and smaller (never under 1 MiB).
func TestDefaultBodyMemory(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })

	debug.SetMemoryLimit(math.MaxInt64)
	assert.Equal(t, int64(64<<20), defaultBodyMemory())
	debug.SetMemoryLimit(256 << 20)
	assert.Equal(t, int64(32<<20), defaultBodyMemory())
	debug.SetMemoryLimit(4 << 30)
	assert.Equal(t, int64(64<<20), defaultBodyMemory())
	debug.SetMemoryLimit(1 << 20)
	assert.Equal(t, int64(1<<20), defaultBodyMemory())
}

// reserve never waits and never goes over the bound; free gives back.
func TestBodyMemoryReserve(t *testing.T) {
	var m bodyMemory
	m.init(100)
	require.True(t, m.reserve(60))
	assert.False(t, m.reserve(41))
	require.True(t, m.reserve(40))
	assert.Equal(t, int64(100), m.held.Load())
	m.free(60)
	assert.True(t, m.reserve(60))
	var unbounded bodyMemory
	unbounded.init(-1)
	assert.True(t, unbounded.reserve(1<<40))
}

// Kept bytes grow a chunk at a time as they arrive (a small one first for
// a small body) and read back at any offset across chunks.
func TestKeptBytesChunks(t *testing.T) {
	var m bodyMemory
	m.init(1 << 20)
	rb := &replayBody{size: -1, limit: 1 << 20, mem: &m}
	data := bytes.Repeat([]byte("0123456789abcdef"), 5000) // 80,000 bytes
	rb.mu.Lock()
	for p := data; len(p) > 0; {
		n := min(len(p), 1000)
		require.True(t, rb.keepLocked(p[:n]))
		p = p[n:]
	}
	assert.Equal(t, len(data), rb.buf.n)
	assert.Len(t, rb.buf.chunks, 3, "80,000 bytes in 32 KiB chunks")
	assert.Equal(t, int64(3*chunkSize), m.held.Load(), "reserved chunk by chunk")
	for _, off := range []int{0, 1, chunkSize - 1, chunkSize, 2*chunkSize + 7, len(data) - 1} {
		p := make([]byte, 40000)
		n := rb.buf.copyAt(p, off)
		assert.Equal(t, min(len(p), len(data)-off), n)
		assert.Equal(t, data[off:off+n], p[:n], "offset %d", off)
	}
	rb.dropLocked()
	rb.mu.Unlock()
	assert.Zero(t, m.held.Load())

	small := &replayBody{size: 100, limit: 1 << 20, mem: &m}
	small.mu.Lock()
	require.True(t, small.keepLocked(data[:100]))
	assert.Equal(t, smallChunk, cap(small.buf.chunks[0]), "a body of 100 bytes takes a small chunk")
	small.dropLocked()
	small.mu.Unlock()

	// No room: keepLocked says so.
	var tiny bodyMemory
	tiny.init(smallChunk)
	none := &replayBody{size: -1, limit: 1 << 20, mem: &tiny}
	none.mu.Lock()
	assert.False(t, none.keepLocked(data[:10]))
	none.mu.Unlock()
}
