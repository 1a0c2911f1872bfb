package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A backend written as host:port, without its scheme, is refused with the
// same words whether it comes from the -backend flag or the config file,
// which also names the entry.
func TestBackendURLWithoutScheme(t *testing.T) {
	_, err := load([]string{"-backend", "http://127.0.0.1:9001", "-backend", "10.0.0.1:8080"})
	require.EqualError(t, err, `invalid -backend "10.0.0.1:8080": want an http:// or https:// URL, such as "http://10.0.0.1:8080"`)

	path := writeConfig(t, `{"backends": [{"url": "http://127.0.0.1:9001"}, {"url": "10.0.0.1:8080"}]}`)
	_, err = load([]string{"-config", path})
	require.EqualError(t, err, path+`: backends[1].url: "10.0.0.1:8080": want an http:// or https:// URL, such as "http://10.0.0.1:8080"`)

	// Without a scheme, credentials are still hidden.
	_, err = load([]string{"-backend", "user:secret@10.0.0.1:8080"})
	require.EqualError(t, err, `invalid -backend "xxxxx@10.0.0.1:8080": want an http:// or https:// URL, such as "http://xxxxx@10.0.0.1:8080"`)
	path = writeConfig(t, `{"backends": [{"url": "user:secret@10.0.0.1:8080"}]}`)
	_, err = load([]string{"-config", path})
	require.EqualError(t, err, path+`: backends[0].url: "xxxxx@10.0.0.1:8080": want an http:// or https:// URL, such as "http://xxxxx@10.0.0.1:8080"`)

	// Another scheme is named.
	path = writeConfig(t, `{"backends": [{"url": "ftp://10.0.0.1:8080"}]}`)
	_, err = load([]string{"-config", path})
	require.EqualError(t, err, path+`: backends[0].url: "ftp://10.0.0.1:8080": want an http:// or https:// URL, not ftp://`)
}
