package main

import (
	"bytes"
	"net/http"
	"os"
	"strings"

	"github.com/tinylb/lb"
)

// stickyConfig is lb.StickyCookie. The secret is never written in the
// file, which is often world-readable or kept in version control: it is
// read from secret_file (the file's content, less one final newline) or
// from the environment variable secret_env.
type stickyConfig struct {
	Name       string   `json:"name"`    // default "tinylb"
	Path       string   `json:"path"`    // default "/"
	Domain     string   `json:"domain"`  // default none
	MaxAge     duration `json:"max_age"` // 0: a session cookie
	Secure     bool     `json:"secure"`
	HTTPOnly   bool     `json:"http_only"`
	SameSite   string   `json:"same_site"`   // lax, strict, none or "" (no attribute)
	SecretFile string   `json:"secret_file"` // at least 16 bytes
	SecretEnv  string   `json:"secret_env"`

	secret []byte // read by validate
}

// sameSites are the same_site settings and the http.SameSite of each.
var sameSites = map[string]http.SameSite{
	"":       http.SameSiteDefaultMode,
	"lax":    http.SameSiteLaxMode,
	"strict": http.SameSiteStrictMode,
	"none":   http.SameSiteNoneMode,
}

// validateSticky checks sticky_cookie and reads its secret.
func (c *config) validateSticky() error {
	if c.StickyCookie == nil {
		return nil
	}
	return c.StickyCookie.validate("sticky_cookie")
}

// validate checks s, whose path is p, and reads its secret; the library's
// StickyCookie.Validate has the last word.
func (s *stickyConfig) validate(p string) error {
	if _, ok := sameSites[s.SameSite]; !ok {
		return badf(p+".same_site", quote(s.SameSite), `want "lax", "strict", "none" or "" (no SameSite attribute)`)
	}
	switch {
	case s.SecretFile != "" && s.SecretEnv != "":
		return badf(p+".secret_env", quote(s.SecretEnv), "give %s.secret_file or %s.secret_env, not both", p, p)
	case s.SecretFile == "" && s.SecretEnv == "":
		return badf(p, "", "needs %s.secret_file or %s.secret_env: the secret that keys the cookie", p, p)
	case s.SecretFile != "":
		data, err := os.ReadFile(s.SecretFile)
		if err != nil {
			return &fieldError{path: p + ".secret_file", value: quote(s.SecretFile), msg: err.Error(), err: err}
		}
		s.secret = bytes.TrimSuffix(bytes.TrimSuffix(data, []byte("\n")), []byte("\r"))
		if len(s.secret) == 0 {
			return badf(p+".secret_file", quote(s.SecretFile), "the file is empty")
		}
	default:
		s.secret = []byte(os.Getenv(s.SecretEnv))
		if len(s.secret) == 0 {
			return badf(p+".secret_env", quote(s.SecretEnv), "the environment variable is empty or unset")
		}
	}
	if err := s.cookie().Validate(); err != nil {
		// Name the field the library complains of (the whole object for
		// a cookie it cannot send); never repeat the secret.
		where := p
		msg := strings.TrimPrefix(err.Error(), lb.ErrInvalidStickyCookie.Error()+": ")
		for _, f := range []struct{ lib, json string }{
			{"Secret", "secret_env"}, {"MaxAge", "max_age"}, {"Path", "path"}, {"SameSite", "same_site"}, {"Name", "name"},
		} {
			if strings.HasPrefix(msg, f.lib) {
				where = p + "." + f.json
				if f.lib == "Secret" && s.SecretFile != "" {
					where = p + ".secret_file"
				}
				break
			}
		}
		return &fieldError{path: where, msg: msg, err: err}
	}
	return nil
}

// cookie returns the lb.StickyCookie of s, whose secret validate read.
func (s *stickyConfig) cookie() lb.StickyCookie {
	return lb.StickyCookie{
		Name:     s.Name,
		Secret:   s.secret,
		Path:     s.Path,
		Domain:   s.Domain,
		MaxAge:   s.MaxAge.D(),
		Secure:   s.Secure,
		HttpOnly: s.HTTPOnly,
		SameSite: sameSites[s.SameSite],
	}
}

// stickyOptions returns lb.WithStickyCookie if sticky_cookie is set.
// c must have passed validate.
func (c *config) stickyOptions() []lb.Option {
	if c.StickyCookie == nil {
		return nil
	}
	return []lb.Option{lb.WithStickyCookie(c.StickyCookie.cookie())}
}
