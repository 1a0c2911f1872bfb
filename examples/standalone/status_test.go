package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tinylb/lb"
)

// statusGet sends a request to the status page and returns the answer.
// edit, if not nil, changes the request first.
func statusDo(t *testing.T, client *http.Client, method, url string, form url.Values, edit func(*http.Request)) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if edit != nil {
		edit(req)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func noRedirects(tr *http.Transport) *http.Client {
	return &http.Client{
		Timeout:       10 * time.Second,
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func TestStatusPageReadOnly(t *testing.T) {
	a, b := newCheckedBackend(t, "a"), newCheckedBackend(t, "b")
	path := writeConfig(t, fmt.Sprintf(`{
		"backends": [{"url": %q, "weight": 2}, {"url": %q, "backup": true}],
		"status": {"listen": "127.0.0.1:0"}
	}`, a.URL, b.URL))
	r := start(t, "-config", path)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := noRedirects(tr)
	get(t, client, http.MethodGet, r.url) // one request, for the counters
	status := "http://" + r.p.StatusAddr().String()

	resp, body := statusDo(t, client, http.MethodGet, status+"/json", nil, nil)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /json: %s, Content-Type %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	var rep struct {
		Totals struct {
			Backends, Serving int
			Requests          int64
		}
		Backends []struct {
			URL    string
			Weight int
			Backup bool
			State  string
		}
	}
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatalf("GET /json: %v\n%s", err, body)
	}
	if rep.Totals.Backends != 2 || rep.Totals.Requests != 1 || len(rep.Backends) != 2 ||
		rep.Backends[0].URL != a.URL || rep.Backends[0].Weight != 2 || rep.Backends[0].State != "up" ||
		rep.Backends[1].URL != b.URL || !rep.Backends[1].Backup {
		t.Errorf("GET /json: %+v", rep)
	}

	resp, body = statusDo(t, client, http.MethodGet, status+"/", nil, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "tinylb status") || !strings.Contains(body, a.URL) {
		t.Errorf("GET /: %s\n%s", resp.Status, body)
	}
	if strings.Contains(body, `name="csrf"`) {
		t.Error("the read-only page shows action forms")
	}
	form := url.Values{"action": {"maintenance-on"}, "backend": {a.URL}}
	if resp, _ := statusDo(t, client, http.MethodPost, status+"/", form, nil); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST to the read-only page: %s, want 405", resp.Status)
	}
	// The status page is not served on the proxy's own address: that is
	// the backends' namespace.
	if _, body := get(t, client, http.MethodGet, r.url+"/json"); body != "a" {
		t.Errorf("GET /json on the proxy: %q, want the backend's answer", body)
	}
}

func TestStatusPageOffByDefault(t *testing.T) {
	a := newCheckedBackend(t, "a")
	r := start(t, "-backend", a.URL)
	if addr := r.p.StatusAddr(); addr != nil {
		t.Errorf("status page on %v without a status listener configured", addr)
	}
}

func TestStatusPageActions(t *testing.T) {
	const token = "s3cret-t0ken-for-the-status-page"
	t.Setenv("TINYLB_TEST_STATUS_TOKEN", token)
	a, b := newCheckedBackend(t, "a"), newCheckedBackend(t, "b")
	path := writeConfig(t, fmt.Sprintf(`{
		"backends": [{"url": %q}, {"url": %q}],
		"status": {"listen": "127.0.0.1:0", "actions": true, "token_env": "TINYLB_TEST_STATUS_TOKEN"}
	}`, a.URL, b.URL))
	r := start(t, "-config", path)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := noRedirects(tr)
	status := "http://" + r.p.StatusAddr().String()
	bearer := func(tok string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
	}
	basic := func(r *http.Request) { r.SetBasicAuth("admin", token) }

	// Without the token, the page shows no forms.
	if _, body := statusDo(t, client, http.MethodGet, status+"/", nil, nil); strings.Contains(body, `name="csrf"`) {
		t.Error("the page shows action forms without the token")
	}
	if _, body := statusDo(t, client, http.MethodGet, status+"/", nil, bearer("wrong-token-wrong-token")); strings.Contains(body, `name="csrf"`) {
		t.Error("the page shows action forms with a wrong token")
	}
	_, body := statusDo(t, client, http.MethodGet, status+"/", nil, bearer(token))
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("the page shows no action forms with the token:\n%s", body)
	}
	csrf := m[1]

	form := url.Values{"action": {"maintenance-on"}, "backend": {b.URL}, "csrf": {csrf}}
	wantJSON := func(r *http.Request) { r.Header.Set("Accept", "application/json") }
	for name, edit := range map[string]func(*http.Request){
		"no token":    wantJSON,
		"wrong token": func(r *http.Request) { wantJSON(r); bearer("wrong-token-wrong-token")(r) },
	} {
		if resp, body := statusDo(t, client, http.MethodPost, status+"/", form, edit); resp.StatusCode != http.StatusForbidden {
			t.Errorf("action with %s: %s %s, want 403", name, resp.Status, body)
		}
	}
	if st := backendStats(t, r.p.bal, b.URL).State; st != lb.StateUp {
		t.Fatalf("b is %v after refused actions, want up", st)
	}

	resp, body := statusDo(t, client, http.MethodPost, status+"/", form, func(r *http.Request) { wantJSON(r); bearer(token)(r) })
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"ok":true`) {
		t.Fatalf("action with the bearer token: %s %s", resp.Status, body)
	}
	if st := backendStats(t, r.p.bal, b.URL).State; st != lb.StateMaintenance {
		t.Errorf("b is %v after maintenance-on, want maintenance", st)
	}

	// A browser logs in with basic authentication, the token as password.
	resp, _ = statusDo(t, client, http.MethodGet, status+"/login", nil, nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
		t.Errorf("GET /login without credentials: %s, WWW-Authenticate %q; want 401 Basic", resp.Status, resp.Header.Get("WWW-Authenticate"))
	}
	resp, _ = statusDo(t, client, http.MethodGet, status+"/login", nil, basic)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Errorf("GET /login with credentials: %s, Location %q; want 303 to /", resp.Status, resp.Header.Get("Location"))
	}
	form.Set("action", "maintenance-off")
	resp, body = statusDo(t, client, http.MethodPost, status+"/", form, func(r *http.Request) { wantJSON(r); basic(r) })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("action with basic authentication: %s %s", resp.Status, body)
	}
	if st := backendStats(t, r.p.bal, b.URL).State; st != lb.StateUp {
		t.Errorf("b is %v after maintenance-off, want up", st)
	}
}
