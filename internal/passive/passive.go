// Package passive holds the rule that package health and package lb must
// read alike: what a health.Passive's MaxFails means. health applies it to
// eject backends, lb to tell the smooth weighted strategies how much one
// failure costs (nginx's ew -= weight/max_fails in
// ngx_http_upstream_free_round_robin_peer).
package passive

// DefaultMaxFails is the threshold of a MaxFails of 0: nginx's default
// max_fails=1.
const DefaultMaxFails = 1

// Threshold returns the number of failures within the fail timeout that
// take a backend out for a MaxFails of maxFails: DefaultMaxFails for 0, and
// 0, meaning never, for a negative maxFails (nginx's max_fails=0).
func Threshold(maxFails int) int {
	switch {
	case maxFails < 0:
		return 0
	case maxFails == 0:
		return DefaultMaxFails
	}
	return maxFails
}
