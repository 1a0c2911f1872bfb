package lb

import "time"

// WithClock sets the clock the balancer reads for passive-health windows,
// ejection ends and slow-start ramps; the default is time.Now. The tests
// use it to move time by hand (active health checks run on real timers:
// test them with testing/synctest). It is a test hook, not an option.
func WithClock(now func() time.Time) Option {
	return optionFunc(func(o *options) { o.now = now })
}

// ViaReverseProxy sends every request through httputil.ReverseProxy, never
// relay, so that a test in package lb_test can run a behaviour over both
// proxy paths. It is a test hook, not an option.
func ViaReverseProxy() Option {
	return optionFunc(func(o *options) { o.viaReverseProxy = true })
}

// UpdateLoadWeights recomputes the dynamic weights of WithLoadReports now,
// as the balancer's updater does every UpdatePeriod, and reports whether a
// new snapshot was published; tests on a manual clock call it instead of
// waiting for the ticker. It is a test hook.
func (b *Balancer) UpdateLoadWeights() bool { return b.updateLoadWeights() }
