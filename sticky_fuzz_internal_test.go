package lb

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// pairsOf lists the non-empty cookie pairs of lines not named name, trimmed,
// in order, and the values of those named name: a reference reading of a
// Cookie header independent of nextCookie and stripLine.
func pairsOf(lines []string, name string) (others, values []string) {
	for _, line := range lines {
		for _, p := range strings.Split(line, ";") {
			p = strings.Trim(p, " \t")
			if p == "" {
				continue
			}
			n, v, eq := strings.Cut(p, "=")
			if eq && strings.Trim(n, " \t") == name {
				v = strings.Trim(v, " \t")
				if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
					v = v[1 : len(v)-1]
				}
				values = append(values, v)
				continue
			}
			others = append(others, p)
		}
	}
	return others, values
}

// FuzzStickyCookieHeader feeds readSticky arbitrary Cookie header lines: it
// never panics, leaves no cookie of its name in the forwarded header, keeps
// every other cookie in order, and honours the first cookie that names a
// backend.
func FuzzStickyCookieHeader(f *testing.F) {
	a, err := NewBackend("http://127.0.0.1:1")
	require.NoError(f, err)
	b, err := NewBackend("http://127.0.0.1:2")
	require.NoError(f, err)
	pool, err := NewPool(a, b)
	require.NoError(f, err)
	bal := New(pool, nil, WithStickyCookie(StickyCookie{Secret: []byte("fuzzing secret, 32 bytes long..")}))
	f.Cleanup(func() { bal.Close() })
	idA := bal.snap.Load().sticky.ids[0]
	idB := bal.snap.Load().sticky.ids[1]
	for _, seed := range [][2]string{
		{"tinylb=" + idA, ""},
		{"x=1; tinylb=" + idA + "; y=2", "z=3"},
		{"tinylb=forged; tinylb=" + idB, "tinylb=" + idA},
		{"tinylb=\"" + idA + "\"", ""},
		{"\ttinylb = " + idB + " ;;", " ; ;"},
		{"tinylb=", "tinylb"},
		{"=;=;tinylb==;a", "tinylb=" + idA[:10]},
		{"a=1; tinylb=x; b=2; tinylb=y; c=3", ""},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, line1, line2 string) {
		var lines []string
		for _, l := range []string{line1, line2} {
			if l != "" {
				lines = append(lines, l)
			}
		}
		wantOthers, values := pairsOf(lines, "tinylb")
		h := http.Header{}
		if len(lines) > 0 {
			h["Cookie"] = append([]string(nil), lines...)
		}
		l := retryLoop{b: bal, req: &http.Request{Header: h}}
		l.readSticky()

		gotOthers, left := pairsOf(h["Cookie"], "tinylb")
		require.Empty(t, left, "a sticky cookie was forwarded: %q", h["Cookie"])
		require.Equal(t, wantOthers, gotOthers, "other cookies changed: %q → %q", lines, h["Cookie"])
		for _, v := range h["Cookie"] {
			require.NotEmpty(t, v, "an empty Cookie line is forwarded")
		}
		require.Equal(t, len(values) > 0, l.sticky.sent)
		want := ""
		for _, v := range values {
			if v == idA || v == idB {
				want = v
				break
			}
		}
		if want != "" {
			require.Equal(t, want, l.sticky.val)
		} else if len(values) > 0 {
			require.Equal(t, values[0], l.sticky.val)
		}
	})
}
