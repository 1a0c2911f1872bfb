package etcd

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tinylb/lb"
	"github.com/tinylb/lb/discovery"
)

func TestParseValue(t *testing.T) {
	good := []struct {
		name, value string
		want        discovery.Target
		key         string
	}{
		{"bare URL", "http://10.0.0.1:8080", discovery.Target{URL: "http://10.0.0.1:8080"}, "http://10.0.0.1:8080"},
		{"bare URL, spaces and newline", "  https://api.internal/base\n", discovery.Target{URL: "https://api.internal/base"}, "https://api.internal/base"},
		{"JSON, all fields, default port", `{"url":"http://10.0.0.2:80","weight":3,"backup":true,"draining":true,"zone":"z","metadata":{"k":"v"}}`,
			discovery.Target{URL: "http://10.0.0.2:80", Weight: 3, Backup: true, Draining: true, Zone: "z", Metadata: map[string]string{"k": "v"}}, "http://10.0.0.2"},
		{"JSON, url only", ` {"url": "http://10.0.0.3"} `, discovery.Target{URL: "http://10.0.0.3"}, "http://10.0.0.3"},
		{"JSON, weight 0 means 1", `{"url": "http://10.0.0.3", "weight": 0}`, discovery.Target{URL: "http://10.0.0.3"}, "http://10.0.0.3"},
		{"JSON, largest weight", `{"url": "http://10.0.0.3", "weight": 1000}`, discovery.Target{URL: "http://10.0.0.3", Weight: lb.MaxWeight}, "http://10.0.0.3"},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			e, err := parseValue([]byte(tc.value))
			require.NoError(t, err)
			assert.Equal(t, tc.want, e.target)
			assert.Equal(t, tc.key, e.key, "the pool's key of the URL")
		})
	}

	bad := []struct{ name, value, says string }{
		{"empty", "", "empty"},
		{"spaces", " \n\t", "empty"},
		{"no scheme", "10.0.0.1:8080", "http:// or https://"},
		{"other scheme", "ftp://10.0.0.1", "http:// or https://"},
		{"credentials", "http://u:p@10.0.0.1", "bad value"},
		{"JSON cut short", `{"url": "http://10.0.0.1"`, "JSON"},
		{"JSON unknown field", `{"url": "http://10.0.0.1", "wieght": 2}`, `unknown field "wieght"`},
		{"JSON wrong type", `{"url": "http://10.0.0.1", "weight": "2"}`, "JSON"},
		{"JSON no url", `{"weight": 2}`, `no "url"`},
		{"JSON then more", `{"url": "http://10.0.0.1"} {"url": "http://10.0.0.2"}`, "data after the object"},
		{"JSON negative weight", `{"url": "http://10.0.0.1", "weight": -1}`, "must not be negative"},
		{"JSON weight too large", `{"url": "http://10.0.0.1", "weight": 1001}`, "must be between 1 and 1000"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseValue([]byte(tc.value))
			require.ErrorIs(t, err, ErrBadValue)
			assert.ErrorContains(t, err, tc.says)
		})
	}
}
