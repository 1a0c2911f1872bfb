package etcd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/discovery"
)

// ErrBadValue is wrapped by the error logged for a key whose value is not a
// backend: empty, malformed JSON, an unknown JSON field, a URL that
// [lb.NewBackend] rejects, or a weight out of range. The key is skipped;
// the rest of the set is still pushed.
var ErrBadValue = errors.New("etcd: bad value")

// value is the JSON form of a key's value. Its fields are those of
// [discovery.Target].
type value struct {
	URL      string            `json:"url"`
	Weight   int               `json:"weight"`
	Backup   bool              `json:"backup"`
	Draining bool              `json:"draining"`
	Zone     string            `json:"zone"`
	Metadata map[string]string `json:"metadata"`
}

// entry is one good key: its target and the pool key of its URL
// ([lb.Backend.Key]), which tells two spellings of one backend apart from
// two backends.
type entry struct {
	target discovery.Target
	key    string
}

// parseValue turns a key's value into a target: either a bare URL or a JSON
// object (a value whose first non-space byte is '{'). Unknown JSON fields
// are an error rather than ignored, so that a misspelt "wieght" is reported
// instead of silently giving weight 1. The URL and weight are checked with
// [lb.NewBackend], the same check the pool makes, so a target that reaches
// the pool is one it accepts.
func parseValue(raw []byte) (entry, error) {
	s := bytes.TrimSpace(raw)
	if len(s) == 0 {
		return entry{}, fmt.Errorf("%w: empty", ErrBadValue)
	}
	var v value
	if s[0] == '{' {
		dec := json.NewDecoder(bytes.NewReader(s))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v); err != nil {
			return entry{}, fmt.Errorf("%w: JSON: %w", ErrBadValue, err)
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return entry{}, fmt.Errorf("%w: JSON: data after the object", ErrBadValue)
		}
		if v.URL == "" {
			return entry{}, fmt.Errorf("%w: JSON: no \"url\"", ErrBadValue)
		}
	} else {
		v.URL = string(s)
	}
	var opts []lb.BackendOption
	switch {
	case v.Weight < 0:
		return entry{}, fmt.Errorf("%w: weight %d: must not be negative", ErrBadValue, v.Weight)
	case v.Weight > 0:
		opts = append(opts, lb.WithWeight(v.Weight))
	}
	b, err := lb.NewBackend(v.URL, opts...)
	if err != nil {
		return entry{}, fmt.Errorf("%w: %w", ErrBadValue, err)
	}
	return entry{
		target: discovery.Target{
			URL:      v.URL,
			Weight:   v.Weight,
			Backup:   v.Backup,
			Draining: v.Draining,
			Zone:     v.Zone,
			Metadata: v.Metadata,
		},
		key: b.Key(),
	}, nil
}
