package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"os"
	"strings"
)

// statusConfig is the status page's listener.
type statusConfig struct {
	Listen   string `json:"listen"`    // "": no status page
	Actions  bool   `json:"actions"`   // drain/maintenance/weight forms, behind the token
	Token    string `json:"token"`     // the token of the actions, or
	TokenEnv string `json:"token_env"` // the environment variable that holds it
}

func (s *statusConfig) validate(p, mainListen string) error {
	if s.Listen == "" {
		switch {
		case s.Actions:
			return badf(p+".actions", "true", "needs %s.listen", p)
		case s.Token != "" || s.TokenEnv != "":
			return badf(p, "", "token set without %s.listen and %s.actions", p, p)
		}
		return nil
	}
	if msg := addrProblem(s.Listen); msg != "" {
		return badf(p+".listen", quote(s.Listen), "%s", msg)
	}
	if _, port, _ := net.SplitHostPort(s.Listen); s.Listen == mainListen && port != "0" {
		return badf(p+".listen", quote(s.Listen), "the same address as listen")
	}
	switch {
	case !s.Actions && (s.Token != "" || s.TokenEnv != ""):
		return badf(p, "", "a token without %s.actions: true has no use", p)
	case !s.Actions:
		return nil
	case s.Token != "" && s.TokenEnv != "":
		return badf(p+".token_env", quote(s.TokenEnv), "give %s.token or %s.token_env, not both", p, p)
	case s.Token == "" && s.TokenEnv == "":
		return badf(p+".actions", "true", "needs %s.token or %s.token_env: actions are never open to everyone", p, p)
	case s.TokenEnv != "" && os.Getenv(s.TokenEnv) == "":
		return badf(p+".token_env", quote(s.TokenEnv), "the environment variable is empty or unset")
	}
	if len(s.token()) < minStatusToken {
		where := p + ".token"
		if s.TokenEnv != "" {
			where = p + ".token_env"
		}
		// Never repeat the token itself.
		return badf(where, "", "the token is too short: use at least %d characters", minStatusToken)
	}
	return nil
}

// token returns the token of the status actions.
func (s *statusConfig) token() string {
	if s.TokenEnv != "" {
		return os.Getenv(s.TokenEnv)
	}
	return s.Token
}

// authorized reports whether r carries the token: as a bearer token, or as
// the password of HTTP basic authentication (what a browser can send).
func authorized(r *http.Request, token string) bool {
	got := ""
	if _, pass, ok := r.BasicAuth(); ok {
		got = pass
	} else if scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		got = strings.TrimSpace(cred)
	}
	if got == "" || token == "" {
		return false
	}
	// Compare digests: constant time whatever the lengths.
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}
