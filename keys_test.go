package lb_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tinylb/lb"
)

func TestKeyFuncs(t *testing.T) {
	t.Parallel()
	req := func(target string, hdr http.Header, remote string) *http.Request {
		r, err := http.NewRequest(http.MethodGet, target, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			r.Header[k] = v
		}
		r.RemoteAddr = remote
		return r
	}
	noURL := &http.Request{Header: http.Header{}}
	for _, tc := range []struct {
		name string
		key  lb.KeyFunc
		r    *http.Request
		want string
	}{
		{"header", lb.HeaderKey("X-User"), req("http://h/", http.Header{"X-User": {"alice", "bob"}}, ""), "alice"},
		{"header name not canonical", lb.HeaderKey("x-user"), req("http://h/", http.Header{"X-User": {"alice"}}, ""), "alice"},
		{"header missing", lb.HeaderKey("X-User"), req("http://h/", http.Header{"X-Other": {"x"}}, ""), ""},
		{"header empty", lb.HeaderKey("X-User"), req("http://h/", http.Header{"X-User": {""}}, ""), ""},
		{"cookie", lb.CookieKey("sid"), req("http://h/", http.Header{"Cookie": {"a=1; sid=s-42; b=2"}}, ""), "s-42"},
		{"cookie missing", lb.CookieKey("sid"), req("http://h/", http.Header{"Cookie": {"sidx=1"}}, ""), ""},
		{"cookie no header", lb.CookieKey("sid"), req("http://h/", nil, ""), ""},
		{"client ip v4", lb.ClientIPKey(), req("http://h/", nil, "192.0.2.7:51234"), "192.0.2.7"},
		{"client ip v6", lb.ClientIPKey(), req("http://h/", nil, "[2001:db8::1]:443"), "2001:db8::1"},
		{"client ip ignores X-Forwarded-For", lb.ClientIPKey(),
			req("http://h/", http.Header{"X-Forwarded-For": {"203.0.113.9"}, "X-Real-Ip": {"203.0.113.9"}}, "192.0.2.7:1"), "192.0.2.7"},
		{"client ip without port", lb.ClientIPKey(), req("http://h/", nil, "192.0.2.7"), "192.0.2.7"},
		{"path", lb.PathKey(), req("http://h/a/b?c=d", nil, ""), "/a/b"},
		{"path root", lb.PathKey(), req("http://h/", nil, ""), "/"},
		{"path no URL", lb.PathKey(), noURL, ""},
		{"query", lb.QueryKey("u"), req("http://h/p?x=1&u=carol&u=dave", nil, ""), "carol"},
		{"query escaped", lb.QueryKey("u"), req("http://h/p?u=a%20b%2Fc", nil, ""), "a b/c"},
		{"query missing", lb.QueryKey("u"), req("http://h/p?x=1", nil, ""), ""},
		{"query no URL", lb.QueryKey("u"), noURL, ""},
	} {
		if got := tc.key(tc.r); got != tc.want {
			t.Errorf("%s: key %q; want %q", tc.name, got, tc.want)
		}
	}
}

// TestKeyFuncsThroughBalancer: each key helper, used by a balancer, sends a
// request exactly where a header carrying the same key value sends it on
// another balancer over the same URLs, which shows that it extracted the
// value and nothing else.
func TestKeyFuncsThroughBalancer(t *testing.T) {
	t.Parallel()
	ups := []*upstream{startUpstream(t, "a", nil), startUpstream(t, "b", nil), startUpstream(t, "c", nil), startUpstream(t, "d", nil)}
	refPool, _ := poolOf(t, urlsOf(ups...)...)
	ref := startGateway(t, refPool, lb.ConsistentHash(lb.HeaderKey("X-Key")))
	where := func(g *gateway, path string, hdr http.Header) string {
		t.Helper()
		r := g.mustDo(t, http.MethodGet, path, "", nil, hdr)
		if r.status != http.StatusOK {
			t.Fatalf("status %d", r.status)
		}
		name, _, _ := strings.Cut(string(r.body), "|")
		return name
	}
	for _, tc := range []struct {
		name string
		key  lb.KeyFunc
		// request returns the path and headers of a request whose key is v.
		request func(v string) (string, http.Header)
		values  []string
	}{
		{"HeaderKey", lb.HeaderKey("X-User"), func(v string) (string, http.Header) {
			return "/", http.Header{"X-User": {v}}
		}, nil},
		{"CookieKey", lb.CookieKey("sid"), func(v string) (string, http.Header) {
			return "/", http.Header{"Cookie": {"theme=dark; sid=" + v}}
		}, nil},
		{"PathKey", lb.PathKey(), func(v string) (string, http.Header) {
			return "/" + v, nil
		}, nil},
		{"QueryKey", lb.QueryKey("u"), func(v string) (string, http.Header) {
			return "/q?x=1&u=" + url.QueryEscape(v), nil
		}, nil},
		{"ClientIPKey", lb.ClientIPKey(), func(v string) (string, http.Header) {
			return "/", http.Header{"X-Forwarded-For": {"203.0.113.9"}}
		}, []string{"127.0.0.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool, _ := poolOf(t, urlsOf(ups...)...)
			g := startGateway(t, pool, lb.ConsistentHash(tc.key))
			values := tc.values
			if values == nil {
				for i := range 40 {
					values = append(values, fmt.Sprintf("v%02d", i))
				}
			}
			used := map[string]bool{}
			for _, v := range values {
				want := where(ref, "/", http.Header{"X-Key": {mustKey(tc.name, v)}})
				for range 3 {
					path, hdr := tc.request(v)
					if got := where(g, path, hdr); got != want {
						t.Fatalf("%s with key %q: served by %s; a header key %q goes to %s", tc.name, v, got, v, want)
					}
				}
				used[want] = true
			}
			if len(values) > 1 && len(used) < 2 {
				t.Errorf("%d keys all went to one backend", len(values))
			}
		})
	}
}

// mustKey is the key value the reference balancer must hash for value v of
// the named helper: PathKey's key is the path, with its slash.
func mustKey(name, v string) string {
	if name == "PathKey" {
		return "/" + v
	}
	return v
}
