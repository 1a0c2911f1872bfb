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

// activeConfig is an active HTTP health check, a health.HTTPCheck: each
// field is the HTTPCheck field of the same name, and its zero value (or
// leaving it out) means what it means there, the library's default.
type activeConfig struct {
	Path      string            `json:"path"`     // "": /healthz
	Method    string            `json:"method"`   // "": GET
	Interval  duration          `json:"interval"` // 0: 5s
	Timeout   duration          `json:"timeout"`  // 0: 2s, or Interval if shorter
	Rise      int               `json:"rise"`     // 0: 2
	Fall      int               `json:"fall"`     // 0: 3
	StatusMin int               `json:"status_min"`
	StatusMax int               `json:"status_max"` // 0 and 0: 200 to 399
	Host      string            `json:"host"`       // "": the backend's host
	Headers   map[string]string `json:"headers"`    // extra request headers
	Body      string            `json:"body"`       // "": the body is not read
}

// passiveConfig is passive health checking, a health.Passive (nginx's
// max_fails and fail_timeout), with its zero values: passive checking is
// on unless MaxFails is -1.
type passiveConfig struct {
	MaxFails     int      `json:"max_fails"`    // 0: 1; -1: off
	FailTimeout  duration `json:"fail_timeout"` // 0: 10s
	FailStatuses []int    `json:"fail_statuses"`
}

// schedule is the library's default schedule of an active check, for the
// messages that name the defaults.
var schedule = health.Schedule{}.WithDefaults()

// validate checks the active check's settings; p is their path.
func (a *activeConfig) validate(p string) error {
	notNegative := func(name string, bad bool, value string, def any) error {
		if bad {
			return badf(p+"."+name, value, "must not be negative (0 is the default, %v)", def)
		}
		return nil
	}
	status := func(name string, s int) error {
		if s != 0 && (s < 100 || s > 599) {
			return badf(p+"."+name, strconv.Itoa(s), "must be an HTTP status, 100 to 599 (0 is the default)")
		}
		return nil
	}
	for _, err := range []error{
		a.validateRequest(p),
		notNegative("interval", a.Interval < 0, quoteD(a.Interval), schedule.Interval),
		notNegative("timeout", a.Timeout < 0, quoteD(a.Timeout), schedule.Timeout.String()+", or the interval if shorter"),
		notNegative("rise", a.Rise < 0, strconv.Itoa(a.Rise), schedule.Rise),
		notNegative("fall", a.Fall < 0, strconv.Itoa(a.Fall), schedule.Fall),
		status("status_min", a.StatusMin),
		status("status_max", a.StatusMax),
	} {
		if err != nil {
			return err
		}
	}
	switch {
	case a.Interval > 0 && a.Timeout > a.Interval:
		return badf(p+".timeout", quoteD(a.Timeout), "longer than %s.interval (%v)", p, a.Interval)
	case a.StatusMax > 0 && a.StatusMin > a.StatusMax:
		return badf(p+".status_min", strconv.Itoa(a.StatusMin), "above %s.status_max (%d)", p, a.StatusMax)
	}
	// The library has the last word, on the defaults in effect too.
	if err := a.check().Validate(); err != nil {
		return badf(p, "", "%v", err)
	}
	return nil
}

// validateRequest checks the settings of the check's request.
func (a *activeConfig) validateRequest(p string) error {
	switch {
	case a.Path != "" && !strings.HasPrefix(a.Path, "/"):
		return badf(p+".path", quote(a.Path), "must start with /")
	// The library judges each setting; the errors here name the field.
	case health.HTTPCheck{Method: a.Method}.Validate() != nil:
		return badf(p+".method", quote(a.Method), "not an HTTP method")
	case health.HTTPCheck{Host: a.Host}.Validate() != nil:
		return badf(p+".host", quote(a.Host), "not a host name")
	}
	for _, k := range slices.Sorted(maps.Keys(a.Headers)) {
		hp := p + ".headers[" + quote(k) + "]"
		if (health.HTTPCheck{Header: http.Header{k: nil}}).Validate() != nil {
			return badf(hp, "", "not a valid header name")
		}
		if (health.HTTPCheck{Header: http.Header{k: {a.Headers[k]}}}).Validate() != nil {
			return badf(hp, quote(a.Headers[k]), "header values must not contain CR, LF or NUL")
		}
	}
	return nil
}

// validate checks the passive check's settings; p is their path.
func (pc *passiveConfig) validate(p string) error {
	switch {
	case pc.MaxFails < -1:
		return badf(p+".max_fails", strconv.Itoa(pc.MaxFails), "must be -1 (off), 0 (the default, 1) or more")
	case pc.FailTimeout < 0:
		return badf(p+".fail_timeout", quoteD(pc.FailTimeout), "must not be negative (0 is the default, 10s)")
	}
	// Each status as the library judges it, so that the error names it.
	for i, s := range pc.FailStatuses {
		if (health.Passive{FailStatuses: []int{s}}).Validate() != nil {
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

// passive returns the health.Passive of pc.
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
