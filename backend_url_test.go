package lb_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tinylb/lb"
)

// TestNewBackendWantsHTTPURL checks that the commonest mistakes, a URL
// without a scheme or with another one, get an error that says what is
// wanted and names the value. The bare "10.0.0.1:8080" used to get
// net/url's "first path segment in URL cannot contain colon".
func TestNewBackendWantsHTTPURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"10.0.0.1:8080", `lb: invalid backend: URL "10.0.0.1:8080": want an http:// or https:// URL, such as "http://10.0.0.1:8080"`},
		{"localhost:8080", `lb: invalid backend: URL "localhost:8080": want an http:// or https:// URL, such as "http://localhost:8080"`},
		{"example.com", `lb: invalid backend: URL "example.com": want an http:// or https:// URL, such as "http://example.com"`},
		{"[::1]:8080", `lb: invalid backend: URL "[::1]:8080": want an http:// or https:// URL, such as "http://[::1]:8080"`},
		{"ftp://x", `lb: invalid backend: URL "ftp://x": want an http:// or https:// URL, not ftp://`},
		{"ws://x:80", `lb: invalid backend: URL "ws://x:80": want an http:// or https:// URL, not ws://`},
		{"http:/x", `lb: invalid backend: URL "http:/x": want an http:// or https:// URL`},
		{"https:x", `lb: invalid backend: URL "https:x": want an http:// or https:// URL`},
		{"/just/a/path", `lb: invalid backend: URL "/just/a/path": want an http:// or https:// URL`},
		{"user:secret@10.0.0.1:80", `lb: invalid backend: URL "xxxxx@10.0.0.1:80": want an http:// or https:// URL, such as "http://xxxxx@10.0.0.1:80"`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			b, err := lb.NewBackend(tc.in)
			require.Error(t, err)
			assert.Nil(t, b)
			assert.True(t, errors.Is(err, lb.ErrInvalidBackend), "errors.Is(%v, ErrInvalidBackend)", err)
			assert.Equal(t, tc.want, err.Error())
			assert.NotContains(t, err.Error(), "secret")
		})
	}
}

// TestNewBackendSchemeAnyCase checks that the scheme check before parsing
// lets http and https through in any case.
func TestNewBackendSchemeAnyCase(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"http://a", "HTTP://a", "Https://a:8443", "https://a/base"} {
		b, err := lb.NewBackend(in)
		require.NoError(t, err, in)
		assert.NotNil(t, b.URL(), in)
	}
}
