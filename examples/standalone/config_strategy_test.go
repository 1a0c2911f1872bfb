package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tinylb/lb/strategy"
)

// getAs sends GET url with header X-User: user and returns the answer's
// body, which names the backend.
func getAs(t *testing.T, client *http.Client, url, user string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	req.Header.Set("X-User", user)
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "GET as %s: %s", user, body)
	return string(body)
}

// Each new strategy, set in a file or by the flags, serves the requests
// over the backends; the hashing one sends a key to one backend.
func TestNewStrategiesServe(t *testing.T) {
	a, b := backend(t, "a", 0), backend(t, "b", 0)
	for _, tt := range []struct {
		strategy string
		file     string // the strategy's settings in the file
		flags    []string
	}{
		{"leastrequest", `"strategy": "leastrequest"`, []string{"-strategy", "leastrequest"}},
		{"peakewma", `"strategy": "peakewma"`, []string{"-strategy", "peakewma"}},
		{"boundedhash", `"strategy": "boundedhash", "hash_key": "header:X-User", "balance_factor": 1.5`,
			[]string{"-strategy", "boundedhash", "-hash-key", "header:X-User", "-balance-factor", "1.5"}},
	} {
		for _, from := range []string{"file", "flags"} {
			t.Run(tt.strategy+" from "+from, func(t *testing.T) {
				var r *running
				if from == "file" {
					r = start(t, "-config", writeConfig(t, fmt.Sprintf(`{%s, "backends": [{"url": %q}, {"url": %q}]}`,
						tt.file, a.URL, b.URL)))
				} else {
					r = start(t, append(tt.flags, "-backend", a.URL, "-backend", b.URL)...)
				}
				cfg := r.p.config()
				assert.Equal(t, tt.strategy, cfg.Strategy)
				client := &http.Client{Timeout: 10 * time.Second}
				defer client.CloseIdleConnections()
				seen := map[string]int{}
				home := map[string]string{}
				for i := range 40 {
					user := fmt.Sprintf("user-%d", i%8)
					got := getAs(t, client, r.url, user)
					require.Contains(t, []string{"a", "b"}, got)
					seen[got]++
					if tt.strategy == "boundedhash" {
						// One request at a time: no backend is over its
						// bound, so a key stays at its home.
						if h, ok := home[user]; ok {
							assert.Equal(t, h, got, "%s moved", user)
						}
						home[user] = got
					}
				}
				if tt.strategy != "peakewma" { // peak EWMA may keep to the faster one
					assert.Len(t, seen, 2, "requests went to %v, want both backends", seen)
				}
				if tt.strategy == "boundedhash" {
					assert.Equal(t, 1.5, cfg.BalanceFactor)
				}
			})
		}
	}
}

// A bad balance factor is refused with the field or flag it came from,
// and the error wraps the library's.
func TestBalanceFactorErrors(t *testing.T) {
	const be = `"backends": [{"url": "http://127.0.0.1:9001"}]`
	const want = "must be a finite number of at least 1, such as 1.25 (0: 1.25)"
	for _, tt := range []struct{ file, want string }{
		{`{"strategy": "boundedhash", "hash_key": "ip", "balance_factor": 0.5, ` + be + `}`, "balance_factor: 0.5: " + want},
		{`{"strategy": "boundedhash", "hash_key": "ip", "balance_factor": -2, ` + be + `}`, "balance_factor: -2: " + want},
		{`{"strategy": "boundedhash", "hash_key": "ip", "balance_factor": 1e400, ` + be + `}`, "balance_factor"},
	} {
		path := writeConfig(t, tt.file)
		_, err := load([]string{"-config", path})
		require.Error(t, err, tt.file)
		assert.Contains(t, err.Error(), path+": "+tt.want)
		if strings.HasSuffix(tt.want, want) {
			assert.ErrorIs(t, err, strategy.ErrInvalidBalanceFactor)
		}
	}
	for _, v := range []string{"NaN", "+Inf", "0.99"} {
		_, err := load([]string{"-strategy", "boundedhash", "-hash-key", "ip", "-balance-factor", v, "-backend", "http://127.0.0.1:9001"})
		require.Error(t, err, v)
		assert.Equal(t, fmt.Sprintf("-balance-factor: %s: %s", v, want), err.Error())
		assert.ErrorIs(t, err, strategy.ErrInvalidBalanceFactor)
	}
	// 0 is the default, 1.25; exactly 1 is allowed.
	for _, v := range []string{"0", "1"} {
		_, err := load([]string{"-strategy", "boundedhash", "-hash-key", "ip", "-balance-factor", v, "-backend", "http://127.0.0.1:9001"})
		assert.NoError(t, err, v)
	}
	// It belongs to boundedhash only, which needs a hash key.
	_, err := load([]string{"-strategy", "hash", "-hash-key", "ip", "-balance-factor", "2", "-backend", "http://127.0.0.1:9001"})
	assert.EqualError(t, err, "-balance-factor: 2: only used with strategy boundedhash, not hash")
	_, err = load([]string{"-strategy", "boundedhash", "-backend", "http://127.0.0.1:9001"})
	assert.EqualError(t, err, "-hash-key: strategy boundedhash needs a hash key: header:NAME, cookie:NAME, query:NAME, ip or path")
	var fe *fieldError
	assert.False(t, errors.As(err, &fe) && fe.err != nil, "a check of ours wraps no library error")
}
