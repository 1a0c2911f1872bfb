package main

import (
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/tinylb/lb/health"
)

// healthConfig is the health checking: active, passive, or both.
type healthConfig struct {
	Active  *activeConfig `json:"active"` // nil: no active checks
	Passive passiveConfig `json:"passive"`
}

// activeConfig is an active HTTP health check (health.HTTPCheck).
type activeConfig struct {
	Path      string            `json:"path"`
	Method    string            `json:"method"` // "": GET
	Interval  duration          `json:"interval"`
	Timeout   duration          `json:"timeout"` // 0: 2s, or Interval if shorter
	Rise      int               `json:"rise"`
	Fall      int               `json:"fall"`
	StatusMin int               `json:"status_min"`
	StatusMax int               `json:"status_max"`
	Host      string            `json:"host"`    // "": the backend's host
	Headers   map[string]string `json:"headers"` // extra request headers
	Body      string            `json:"body"`    // "": the body is not read
}

// passiveConfig is passive health checking (health.Passive), nginx's
// max_fails and fail_timeout.
type passiveConfig struct {
	MaxFails     int      `json:"max_fails"` // 0: off
	FailTimeout  duration `json:"fail_timeout"`
	FailStatuses []int    `json:"fail_statuses"`
}

// defaultActive returns the active check's settings before the file's
// "health.active" object is applied, or for -health-path.
func defaultActive() activeConfig {
	return activeConfig{
		Path:      defaultHealthPath,
		Interval:  duration(defaultHealthInterval),
		Rise:      2,
		Fall:      3,
		StatusMin: 200,
		StatusMax: 399,
	}
}

// UnmarshalJSON starts from the defaults, so that a field left out keeps
// its default and one given as 0 is an error.
func (a *activeConfig) UnmarshalJSON(data []byte) error {
	type plain activeConfig
	p := plain(defaultActive())
	if err := decodeStrict(data, &p); err != nil {
		return err
	}
	*a = activeConfig(p)
	return nil
}

func (a *activeConfig) validate(p string) error {
	switch {
	case !strings.HasPrefix(a.Path, "/"):
		return badf(p+".path", quote(a.Path), "must start with /")
	case a.Method != "" && !isToken(a.Method):
		return badf(p+".method", quote(a.Method), "not an HTTP method")
	case a.Interval <= 0:
		return badf(p+".interval", quoteD(a.Interval), "must be positive")
	case a.Timeout < 0:
		return badf(p+".timeout", quoteD(a.Timeout), "must not be negative (0 is 2s, or the interval if shorter)")
	case a.Timeout > a.Interval:
		return badf(p+".timeout", quoteD(a.Timeout), "longer than %s.interval (%v)", p, a.Interval)
	case a.Rise < 1:
		return badf(p+".rise", strconv.Itoa(a.Rise), "must be at least 1")
	case a.Fall < 1:
		return badf(p+".fall", strconv.Itoa(a.Fall), "must be at least 1")
	case a.StatusMin < 100 || a.StatusMin > 599:
		return badf(p+".status_min", strconv.Itoa(a.StatusMin), "must be an HTTP status, 100 to 599")
	case a.StatusMax < 100 || a.StatusMax > 599:
		return badf(p+".status_max", strconv.Itoa(a.StatusMax), "must be an HTTP status, 100 to 599")
	case a.StatusMin > a.StatusMax:
		return badf(p+".status_min", strconv.Itoa(a.StatusMin), "above %s.status_max (%d)", p, a.StatusMax)
	case strings.ContainsFunc(a.Host, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '/' }):
		return badf(p+".host", quote(a.Host), "not a host name")
	}
	for _, k := range slices.Sorted(maps.Keys(a.Headers)) {
		hp := p + ".headers[" + quote(k) + "]"
		if !isToken(k) {
			return badf(hp, "", "not a valid header name")
		}
		if strings.ContainsAny(a.Headers[k], "\r\n\x00") {
			return badf(hp, quote(a.Headers[k]), "header values must not contain CR, LF or NUL")
		}
	}
	if err := a.check().Validate(); err != nil {
		return badf(p, "", "%v", err)
	}
	return nil
}

func (pc *passiveConfig) validate(p string) error {
	switch {
	case pc.MaxFails < 0:
		return badf(p+".max_fails", strconv.Itoa(pc.MaxFails), "must be 0 (off) or more")
	case pc.FailTimeout <= 0:
		return badf(p+".fail_timeout", quoteD(pc.FailTimeout), "must be positive")
	}
	for i, s := range pc.FailStatuses {
		if s < 500 || s > 599 {
			return badf(index(p+".fail_statuses", i), strconv.Itoa(s), "must be a 5xx status")
		}
	}
	if err := pc.passive().Validate(); err != nil {
		return badf(p, "", "%v", err)
	}
	return nil
}

// check returns the health.HTTPCheck of a.
func (a *activeConfig) check() *health.HTTPCheck {
	hc := &health.HTTPCheck{
		Path:      a.Path,
		Method:    a.Method,
		Host:      a.Host,
		Interval:  a.Interval.D(),
		Timeout:   a.Timeout.D(),
		Rise:      a.Rise,
		Fall:      a.Fall,
		StatusMin: a.StatusMin,
		StatusMax: a.StatusMax,
		Body:      a.Body,
	}
	if len(a.Headers) > 0 {
		hc.Header = make(http.Header, len(a.Headers))
		for k, v := range a.Headers {
			hc.Header.Set(k, v)
		}
	}
	return hc
}

func (pc *passiveConfig) passive() health.Passive {
	return health.Passive{
		MaxFails:     pc.MaxFails,
		FailTimeout:  pc.FailTimeout.D(),
		FailStatuses: pc.FailStatuses,
	}
}

// validateHealth checks the active and passive health checks.
func (c *config) validateHealth() error {
	if a := c.Health.Active; a != nil {
		if err := a.validate("health.active"); err != nil {
			return err
		}
	}
	return c.Health.Passive.validate("health.passive")
}
