package lb

import "sync"

// keptBytes is the part of a request body kept for a replay or read ahead:
// a list of chunks from pools, so that a body costs memory only as its
// bytes arrive, none is copied to grow, and the chunks serve the next
// request when this one is done. Every chunk is full but the last.
type keptBytes struct {
	chunks [][]byte
	n      int // bytes kept
	arr    [4][]byte
}

// Chunk sizes: a small first chunk for a small body, then the size of a
// read from the client (and of the copy buffers).
const (
	smallChunk = 4 << 10
	chunkSize  = copyBufferSize
)

var smallChunks = sync.Pool{New: func() any { return new([smallChunk]byte) }}

// room returns the free space of the last chunk; empty when a chunk must
// be added.
func (k *keptBytes) room() []byte {
	if len(k.chunks) == 0 {
		return nil
	}
	last := k.chunks[len(k.chunks)-1]
	return last[len(last):cap(last)]
}

// commit records that n bytes were written to room.
func (k *keptBytes) commit(n int) {
	last := &k.chunks[len(k.chunks)-1]
	*last = (*last)[:len(*last)+n]
	k.n += n
}

// nextChunkSize is the size of the chunk to add when at most left more
// bytes will come (left < 0: unknown).
func (k *keptBytes) nextChunkSize(left int64) int {
	if len(k.chunks) == 0 && left >= 0 && left <= smallChunk {
		return smallChunk
	}
	return chunkSize
}

// add appends an empty chunk of size (smallChunk or chunkSize).
func (k *keptBytes) add(size int) {
	var c []byte
	if size == smallChunk {
		c = smallChunks.Get().(*[smallChunk]byte)[:0]
	} else {
		c = sharedBufferPool.Get()[:0]
	}
	if k.chunks == nil {
		k.chunks = k.arr[:0]
	}
	k.chunks = append(k.chunks, c)
}

// copyAt copies kept bytes from offset off into p.
func (k *keptBytes) copyAt(p []byte, off int) int {
	n := 0
	for _, c := range k.chunks {
		if off >= len(c) {
			off -= len(c)
			continue
		}
		m := copy(p[n:], c[off:])
		n += m
		off = 0
		if n == len(p) {
			break
		}
	}
	return n
}

// release gives the chunks back to their pools. Nothing may read them
// after.
func (k *keptBytes) release() {
	for i, c := range k.chunks {
		if cap(c) == smallChunk {
			smallChunks.Put((*[smallChunk]byte)(c[:smallChunk]))
		} else {
			sharedBufferPool.Put(c[:cap(c)])
		}
		k.chunks[i] = nil
	}
	k.chunks = k.chunks[:0]
	k.n = 0
}
