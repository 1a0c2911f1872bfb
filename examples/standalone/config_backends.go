package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/tinylb/lb"
)

// backendConfig is one backend: an entry of "backends", or a -backend flag.
type backendConfig struct {
	URL    string `json:"url"`
	Weight int    `json:"weight"` // default 1
	Backup bool   `json:"backup"`
}

// UnmarshalJSON starts from weight 1, so that "weight": 0 is an error.
func (b *backendConfig) UnmarshalJSON(data []byte) error {
	type plain backendConfig
	p := plain{Weight: 1}
	if err := decodeStrict(data, &p); err != nil {
		return err
	}
	*b = backendConfig(p)
	return nil
}

// parseBackend parses the value of a -backend flag: a URL, optionally
// followed by "=" and a weight.
func parseBackend(s string) (backendConfig, error) {
	b := backendConfig{URL: s, Weight: 1}
	if i := strings.LastIndexByte(s, '='); i >= 0 {
		b.URL = s[:i]
		w := s[i+1:]
		if w == "" {
			return backendConfig{}, fmt.Errorf("invalid -backend %q: missing weight after \"=\"", redact(s))
		}
		n, err := strconv.Atoi(w)
		if err != nil {
			return backendConfig{}, fmt.Errorf("invalid -backend %q: weight %q is not an integer", redact(s), w)
		}
		b.Weight = n
	}
	// Let the library judge the URL and the weight. Its errors quote the
	// URL without credentials.
	if _, err := b.backend(); err != nil {
		return backendConfig{}, fmt.Errorf("invalid -backend %q: %s", redact(s), urlProblem(err))
	}
	return b, nil
}

// redact hides the credentials of a URL that has them, with its scheme
// or without.
func redact(s string) string {
	_, rest, ok := strings.Cut(s, "://")
	if !ok {
		rest = s
	}
	authority := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority = rest[:i]
	}
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		return s[:len(s)-len(rest)] + "xxxxx" + rest[i:]
	}
	return s
}

// backend returns a new lb.Backend of b.
func (b backendConfig) backend() (*lb.Backend, error) {
	opts := []lb.BackendOption{lb.WithWeight(b.Weight)}
	if b.Backup {
		opts = append(opts, lb.AsBackup())
	}
	return lb.NewBackend(b.URL, opts...)
}

// urlProblem returns what the library finds wrong with a backend URL,
// without the "lb: invalid backend: URL ..." it starts with.
func urlProblem(err error) string {
	msg := err.Error()
	rest, ok := strings.CutPrefix(msg, lb.ErrInvalidBackend.Error()+": URL ")
	if !ok {
		return msg
	}
	q, err2 := strconv.QuotedPrefix(rest)
	if err2 != nil {
		return msg
	}
	return strings.TrimPrefix(rest[len(q):], ": ")
}

// newBackends returns new lb.Backends of the configured backends. c must
// have passed validate.
func (c *config) newBackends() ([]*lb.Backend, error) {
	list := make([]*lb.Backend, 0, len(c.Backends))
	for _, spec := range c.Backends {
		be, err := spec.backend()
		if err != nil {
			return nil, err
		}
		list = append(list, be)
	}
	return list, nil
}

// validateBackends checks the backend list: at least one backend, each
// URL valid and different from the others, each weight in range.
func (c *config) validateBackends() error {
	if c.Discovery != nil {
		if len(c.Backends) > 0 {
			return badf("backends", "", `"backends" and "discovery" exclude each other: the backends are listed or discovered, not both`)
		}
		return c.Discovery.validate("discovery")
	}
	if len(c.Backends) == 0 {
		return errNoStaticBackends
	}
	seen := make(map[string]int, len(c.Backends))
	for i, b := range c.Backends {
		p := index("backends", i)
		be, err := lb.NewBackend(b.URL)
		if err != nil {
			return badf(p+".url", quote(redact(b.URL)), "%s", urlProblem(err))
		}
		if j, dup := seen[be.Key()]; dup {
			return badf(p+".url", quote(b.URL), "duplicate backend: the same as backends[%d]", j)
		}
		seen[be.Key()] = i
		if b.Weight < 1 || b.Weight > lb.MaxWeight {
			return badf(p+".weight", strconv.Itoa(b.Weight), "must be between 1 and %d", lb.MaxWeight)
		}
	}
	return nil
}
