package lb

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// statusActionError is an action refused, with the status to answer.
type statusActionError struct {
	code int
	msg  string
}

func (e *statusActionError) Error() string { return e.msg }

// serveAction runs one action request. Whatever happens, a browser that
// posted the form without the page's script gets a redirect back to the
// page (or the error as text); the script asks for JSON.
func (h *statusHandler) serveAction(w http.ResponseWriter, r *http.Request) {
	wantJSON := strings.Contains(r.Header.Get("Accept"), "application/json")
	backend, action, err := h.act(w, r)
	commonHeaders(w)
	if wantJSON {
		res := struct {
			OK      bool   `json:"ok"`
			Action  string `json:"action,omitempty"`
			Backend string `json:"backend,omitempty"`
			Error   string `json:"error,omitempty"`
		}{OK: err == nil, Action: action, Backend: backend}
		code := http.StatusOK
		if err != nil {
			res.Error = err.Error()
			code = err.code
		}
		body, _ := json.Marshal(res)
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(code)
		w.Write(append(body, '\n'))
		return
	}
	if err != nil {
		http.Error(w, err.msg, err.code)
		return
	}
	http.Redirect(w, r, pageLocation(r), http.StatusSeeOther)
}

// pageLocation is where to send a browser back after an action: the path
// it posted to, as the client wrote it (before any StripPrefix).
func pageLocation(r *http.Request) string {
	u, err := url.ParseRequestURI(r.RequestURI)
	if err != nil || !strings.HasPrefix(u.Path, "/") || strings.HasPrefix(u.Path, "//") || strings.Contains(u.Path, "\\") {
		return "."
	}
	return u.EscapedPath()
}

// act checks and carries out an action request.
func (h *statusHandler) act(w http.ResponseWriter, r *http.Request) (backend, action string, _ *statusActionError) {
	refuse := func(code int, format string, a ...any) (string, string, *statusActionError) {
		return backend, action, &statusActionError{code: code, msg: fmt.Sprintf(format, a...)}
	}
	if err := h.cop.Check(r); err != nil {
		return refuse(http.StatusForbidden, "cross-origin request refused")
	}
	if ref := r.Header.Get("Referer"); ref != "" && r.Header.Get("Origin") == "" && r.Header.Get("Sec-Fetch-Site") == "" {
		if u, err := url.Parse(ref); err != nil || !strings.EqualFold(u.Host, r.Host) {
			return refuse(http.StatusForbidden, "cross-origin request refused")
		}
	}
	if !h.cfg.authorize(r) {
		return refuse(http.StatusForbidden, "not authorized")
	}
	r.Body = http.MaxBytesReader(w, r.Body, statusMaxForm)
	if err := r.ParseForm(); err != nil {
		return refuse(http.StatusBadRequest, "bad form: %v", err)
	}
	if !hasBearer(r) {
		token := r.PostForm.Get("csrf")
		if token == "" || subtle.ConstantTimeCompare([]byte(token), []byte(h.token)) != 1 {
			return refuse(http.StatusForbidden, "missing or invalid csrf token: reload the page")
		}
	}
	backend, action = r.PostForm.Get("backend"), r.PostForm.Get("action")
	if backend == "" {
		return refuse(http.StatusBadRequest, "no backend given")
	}
	pool := h.b.Pool()
	var err error
	switch action {
	case "drain":
		// Start the drain and return at once: the page shows its progress.
		ctx, cancel := context.WithCancel(r.Context())
		cancel()
		if err = pool.Drain(ctx, backend); errors.Is(err, context.Canceled) {
			err = nil
		}
	case "maintenance-on":
		err = pool.SetMaintenance(backend, true)
	case "maintenance-off":
		err = pool.SetMaintenance(backend, false)
	case "weight":
		w, perr := strconv.Atoi(strings.TrimSpace(r.PostForm.Get("weight")))
		if perr != nil {
			return refuse(http.StatusBadRequest, "weight %q is not a number", r.PostForm.Get("weight"))
		}
		err = pool.SetWeight(backend, w)
	default:
		return refuse(http.StatusBadRequest, "unknown action %q", action)
	}
	switch {
	case errors.Is(err, ErrUnknownBackend):
		return refuse(http.StatusNotFound, "%v", err)
	case err != nil:
		return refuse(http.StatusBadRequest, "%v", err)
	}
	return backend, action, nil
}

// hasBearer reports whether r carries an Authorization header of the Bearer
// scheme (RFC 6750 §2.1; the scheme is case-insensitive, RFC 9110 §11.1).
//
// Such a request needs no CSRF token: a bearer token is not an ambient
// credential. A browser sends cookies, basic credentials and client
// certificates by itself, even with a form another site posts, but an
// Authorization header only when a script sets it, and a script of another
// origin cannot without a CORS preflight, which the handler never grants.
// So a request with one was made on purpose, by a program or the page's
// own origin.
func hasBearer(r *http.Request) bool {
	scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	return ok && strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(cred) != ""
}
