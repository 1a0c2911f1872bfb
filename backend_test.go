package lb_test

import (
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/tinylb/lb"
)

func TestNewBackendDefaults(t *testing.T) {
	t.Parallel()
	b, err := lb.NewBackend("http://10.0.0.2:8080")
	if err != nil {
		t.Fatalf("NewBackend: %v", err)
	}
	if got := b.Weight(); got != 1 {
		t.Errorf("Weight() = %d; want 1 by default", got)
	}
	u := b.URL()
	if u == nil || u.Scheme != "http" || u.Host != "10.0.0.2:8080" {
		t.Errorf("URL() = %v; want http://10.0.0.2:8080", u)
	}
	if !b.Alive() {
		t.Error("Alive() = false for a backend in no pool; want true")
	}
	if b.Backup() {
		t.Error("Backup() = true without AsBackup")
	}
	if got := b.Active(); got != 0 {
		t.Errorf("Active() = %d; want 0", got)
	}

	a, err := lb.NewBackend("http://10.0.0.1:8080", lb.WithWeight(5))
	if err != nil {
		t.Fatalf("NewBackend with weight 5: %v", err)
	}
	if got := a.Weight(); got != 5 {
		t.Errorf("Weight() = %d; want 5", got)
	}
	if _, err := lb.NewBackend("http://10.0.0.1:8080", lb.WithWeight(lb.MaxWeight)); err != nil {
		t.Errorf("WithWeight(MaxWeight): %v; want no error", err)
	}
	if _, err := lb.NewBackend("http://10.0.0.1:8080", nil); err != nil {
		t.Errorf("NewBackend with a nil option: %v; want no error", err)
	}
	bk, err := lb.NewBackend("https://api.internal/base", lb.AsBackup())
	if err != nil {
		t.Fatalf("NewBackend(https with path): %v", err)
	}
	if !bk.Backup() || bk.URL().Path != "/base" {
		t.Errorf("Backup() = %v, path %q; want true, /base", bk.Backup(), bk.URL().Path)
	}
}

// TestNewBackendNormalizes checks that the identity of a backend ignores the
// case of scheme and host and a trailing slash.
func TestNewBackendNormalizes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, key string }{
		{"HTTP://Example.COM:8080/", "http://example.com:8080"},
		{"http://example.com:8080", "http://example.com:8080"},
		{"https://api.internal/base/", "https://api.internal/base"},
		{"http://[::1]:9000", "http://[::1]:9000"},
	} {
		b, err := lb.NewBackend(tc.in)
		if err != nil {
			t.Errorf("NewBackend(%q): %v", tc.in, err)
			continue
		}
		if got := b.String(); got != tc.key {
			t.Errorf("NewBackend(%q).String() = %q; want %q", tc.in, got, tc.key)
		}
		if got := b.Key(); got != tc.key {
			t.Errorf("NewBackend(%q).Key() = %q; want %q", tc.in, got, tc.key)
		}
	}
}

func TestNewBackendBadInput(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, url string
		secret    string // must not appear in the error
	}{
		{name: "empty", url: ""},
		{name: "blank", url: "   "},
		{name: "no scheme", url: "10.0.0.1:8080"},
		{name: "no scheme host only", url: "backend.internal"},
		{name: "ftp scheme", url: "ftp://x"},
		{name: "opaque", url: "mailto:ops@example.com"},
		{name: "no host", url: "http://"},
		{name: "path only", url: "http:///path"},
		{name: "credentials", url: "http://user:pass@h:1", secret: "pass"},
		{name: "user only", url: "http://admin@h:1", secret: "admin"},
		{name: "credentials with at sign", url: "http://user:hunter2@secret@h:1", secret: "secret"},
		{name: "credentials percent", url: "http://user:s%40uce@h:1", secret: "s%40uce"},
		{name: "port too big", url: "http://h:99999"},
		{name: "port zero", url: "http://h:0"},
		{name: "empty port", url: "http://h:"},
		{name: "port not a number", url: "http://h:http"},
		{name: "unclosed ipv6", url: "http://[::1"},
		{name: "fragment", url: "http://h:1/#frag"},
		{name: "space in host", url: "http://h x:1"},
		{name: "bad escape", url: "http://h:1/%zz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := lb.NewBackend(tc.url)
			if err == nil {
				t.Fatalf("NewBackend(%q) = %v, nil; want an error", tc.url, b)
			}
			if b != nil {
				t.Errorf("NewBackend(%q) returned a backend with its error", tc.url)
			}
			if !errors.Is(err, lb.ErrInvalidBackend) {
				t.Errorf("NewBackend(%q) error %q does not wrap ErrInvalidBackend", tc.url, err)
			}
			if tc.secret != "" && strings.Contains(err.Error(), tc.secret) {
				t.Errorf("NewBackend(%q) error %q reveals the credentials %q", tc.url, err, tc.secret)
			}
		})
	}
}

func TestNewBackendBadWeight(t *testing.T) {
	t.Parallel()
	for _, w := range []int{0, -1, -1000, lb.MaxWeight + 1} {
		t.Run(strconv.Itoa(w), func(t *testing.T) {
			b, err := lb.NewBackend("http://backend.internal:8080", lb.WithWeight(w))
			if err == nil {
				t.Fatalf("WithWeight(%d): got backend %v, no error", w, b)
			}
			if !errors.Is(err, lb.ErrInvalidBackend) {
				t.Errorf("WithWeight(%d) error %q does not wrap ErrInvalidBackend", w, err)
			}
			// The value must appear as a number of its own, not inside
			// another one ("1000" does not name 0).
			re := regexp.MustCompile(`(^|[^0-9-])` + regexp.QuoteMeta(strconv.Itoa(w)) + `([^0-9]|$)`)
			if !re.MatchString(err.Error()) {
				t.Errorf("WithWeight(%d) error %q does not name the value %d", w, err, w)
			}
		})
	}
}

// TestBackendOutsidePool checks the accessors of a backend in no pool and
// after it left one.
func TestBackendOutsidePool(t *testing.T) {
	t.Parallel()
	b := backendFor(t, "http://10.0.0.1:8080")
	p, err := lb.NewPool(b)
	if err != nil {
		t.Fatal(err)
	}
	if !b.Alive() {
		t.Error("Alive() = false in a pool without health checks")
	}
	if err := p.Remove("http://10.0.0.1:8080"); err != nil {
		t.Fatal(err)
	}
	if !b.Alive() {
		t.Error("Alive() = false after leaving the pool")
	}
	// A backend that left its pool may join another one.
	if _, err := lb.NewPool(b); err != nil {
		t.Errorf("NewPool with a backend removed from its pool: %v", err)
	}
}
