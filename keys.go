package lb

import (
	"net"
	"net/http"
	"net/textproto"
)

// HeaderKey returns a [KeyFunc] that hashes on the value of the named
// request header (the first value if it appears more than once). A request
// without the header has an empty key and is balanced round robin.
func HeaderKey(name string) KeyFunc {
	canon := textproto.CanonicalMIMEHeaderKey(name)
	return func(r *http.Request) string {
		if v := r.Header[canon]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
}

// CookieKey returns a [KeyFunc] that hashes on the value of the named
// cookie: sticky sessions keyed by a session cookie the application already
// sets. A request without the cookie is balanced round robin.
func CookieKey(name string) KeyFunc {
	return func(r *http.Request) string {
		c, err := r.Cookie(name)
		if err != nil {
			return ""
		}
		return c.Value
	}
}

// ClientIPKey returns a [KeyFunc] that hashes on the IP address of the
// connection the request came from (r.RemoteAddr without its port), like
// nginx's ip_hash. It does not trust X-Forwarded-For: behind another proxy,
// hash on a header that proxy sets with [HeaderKey] instead.
func ClientIPKey() KeyFunc {
	return func(r *http.Request) string {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			return r.RemoteAddr
		}
		return host
	}
}

// PathKey returns a [KeyFunc] that hashes on the request path, so that each
// URL is served by one backend (good for backend caches).
func PathKey() KeyFunc {
	return func(r *http.Request) string {
		if r.URL == nil {
			return ""
		}
		return r.URL.Path
	}
}

// QueryKey returns a [KeyFunc] that hashes on the named query parameter.
func QueryKey(name string) KeyFunc {
	return func(r *http.Request) string {
		if r.URL == nil {
			return ""
		}
		return r.URL.Query().Get(name)
	}
}
