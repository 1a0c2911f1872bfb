package faultkit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
)

// Body returns the n bytes of the deterministic response body of request
// id: the output of a ChaCha8 generator seeded with SHA-256(id). Two
// requests with different IDs get different bodies, so a response that
// reached the wrong client is caught by its content alone.
func Body(id string, n int) []byte {
	b := make([]byte, n)
	newGen(id).Read(b)
	return b
}

// BodySHA returns the hex SHA-256 of Body(id, n) without holding the body.
func BodySHA(id string, n int64) string {
	h := sha256.New()
	WriteBody(h, id, n)
	return hex.EncodeToString(h.Sum(nil))
}

// SHA returns the hex SHA-256 of p.
func SHA(p []byte) string {
	s := sha256.Sum256(p)
	return hex.EncodeToString(s[:])
}

func newGen(id string) *rand.ChaCha8 {
	return rand.NewChaCha8(sha256.Sum256([]byte(id)))
}

// WriteBody writes Body(id, n) to w in 32 KiB pieces, without holding the
// whole body.
func WriteBody(w io.Writer, id string, n int64) (int64, error) {
	return io.CopyN(w, BodyReader(id, n), n)
}

// BodyReader returns a reader of Body(id, n).
func BodyReader(id string, n int64) io.Reader {
	return io.LimitReader(newGen(id), n)
}

// ErrBodyMismatch is wrapped by the error of [VerifyBody] when a byte
// differs from the expected body.
var ErrBodyMismatch = errors.New("faultkit: body differs from the expected body")

// ErrShortBody is returned by [VerifyBody] when the body ended cleanly
// (io.EOF) before its expected length: a cut that looks complete.
var ErrShortBody = errors.New("faultkit: body ended cleanly before its expected length")

// VerifyBody reads r to its end and compares it with Body(id, n). It
// returns the number of bytes read that matched the expected body from its
// start, and an error: ErrBodyMismatch (wrapped) at the first wrong byte or
// if r holds more than n bytes, ErrShortBody if r ends cleanly early, or the
// read error of r. A nil error means r held exactly Body(id, n).
func VerifyBody(r io.Reader, id string, n int64) (int64, error) {
	want := newGen(id)
	buf := make([]byte, 32<<10)
	exp := make([]byte, 32<<10)
	var got int64
	for {
		m, err := r.Read(buf)
		if m > 0 {
			if got+int64(m) > n {
				// Compare what fits, then report the excess.
				fit := int(n - got)
				want.Read(exp[:fit])
				if i := firstDiff(buf[:fit], exp[:fit]); i >= 0 {
					return got + int64(i), fmt.Errorf("%w at byte %d", ErrBodyMismatch, got+int64(i))
				}
				return n, fmt.Errorf("%w: more than %d bytes", ErrBodyMismatch, n)
			}
			want.Read(exp[:m])
			if i := firstDiff(buf[:m], exp[:m]); i >= 0 {
				return got + int64(i), fmt.Errorf("%w at byte %d", ErrBodyMismatch, got+int64(i))
			}
			got += int64(m)
		}
		if err == io.EOF {
			if got < n {
				return got, fmt.Errorf("%w: %d of %d bytes", ErrShortBody, got, n)
			}
			return got, nil
		}
		if err != nil {
			return got, err
		}
	}
}

func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return len(a)
}
