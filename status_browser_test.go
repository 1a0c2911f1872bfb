//go:build unix

package lb_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tinylb/lb"
	"github.com/tinylb/lb/health"
)

// The browser test drives headless Chromium through chromedriver's
// WebDriver protocol (plain HTTP and JSON) against the status page, the
// way a person would look at it. It needs Debian's chromium and
// chromium-driver packages and is skipped without them.
//
// With TINYLB_SCREENSHOT=1 it lets the page gather a few seconds of
// sparkline history and saves its screenshot as docs/status.png, the one
// in the README; otherwise the screenshot goes to a temporary directory.

const statusInstallHint = "chromium not installed: apt-get install -y chromium chromium-driver"

// statusFindBrowser returns the paths of chromium and chromedriver, or
// skips the test.
func statusFindBrowser(t *testing.T) (browser, driver string) {
	t.Helper()
	find := func(names ...string) string {
		for _, n := range names {
			if p, err := exec.LookPath(n); err == nil {
				return p
			}
		}
		return ""
	}
	browser = find("/usr/bin/chromium", "chromium", "chromium-browser")
	driver = find("/usr/bin/chromedriver", "chromedriver")
	if browser == "" || driver == "" {
		t.Skip(statusInstallHint)
	}
	return browser, driver
}

// webDriver is a WebDriver client for one chromedriver process and one
// browser session.
type webDriver struct {
	t       *testing.T
	cmd     *exec.Cmd
	base    string // http://127.0.0.1:port
	c       *http.Client
	tr      *http.Transport
	session string
	dir     string // temporary directory holding the browser's profile
	stopped bool
}

var statusDriverPortRe = regexp.MustCompile(`started successfully on port (\d+)`)

// startWebDriver starts chromedriver on a free loopback port, in a process
// group of its own so that it and the browser it starts can be killed
// together, and opens a headless browser session. Cleanups end the session
// and kill whatever is left of the group.
func startWebDriver(t *testing.T, browser, driver string, width, height int) *webDriver {
	t.Helper()
	dir := t.TempDir()
	logf, err := os.Create(filepath.Join(dir, "chromedriver.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(driver, "--port=0", "--allowed-ips=127.0.0.1")
	cmd.Stdout, cmd.Stderr = logf, logf // files: no copying goroutines
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Skipf("%s (starting %s: %v)", statusInstallHint, driver, err)
	}
	tr := &http.Transport{Proxy: nil}
	wd := &webDriver{t: t, cmd: cmd, dir: dir, c: &http.Client{Transport: tr, Timeout: 60 * time.Second}, tr: tr}
	t.Cleanup(wd.stop)

	deadline := time.Now().Add(20 * time.Second)
	for wd.base == "" {
		out, _ := os.ReadFile(logf.Name())
		if m := statusDriverPortRe.FindSubmatch(out); m != nil {
			wd.base = "http://127.0.0.1:" + string(m[1])
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("chromedriver did not start:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}

	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName":       "chrome",
		"goog:loggingPrefs": map[string]string{"browser": "ALL"},
		"goog:chromeOptions": map[string]any{
			"binary": browser,
			"args": []string{
				"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
				"--disable-quic", "--no-first-run", "--disable-background-networking",
				"--disable-component-update", "--disable-sync", "--disable-extensions",
				"--disable-breakpad", "--disable-crash-reporter",
				"--hide-scrollbars", "--force-device-scale-factor=1",
				fmt.Sprintf("--window-size=%d,%d", width, height),
				"--user-data-dir=" + filepath.Join(dir, "profile"),
			},
		},
	}}}
	var sess struct {
		SessionID string `json:"sessionId"`
	}
	if err := wd.do(http.MethodPost, "/session", caps, &sess); err != nil {
		out, _ := os.ReadFile(logf.Name())
		t.Fatalf("new browser session: %v\nchromedriver output:\n%s", err, out)
	}
	wd.session = sess.SessionID
	return wd
}

// stop ends the session (the browser quits), then kills chromedriver's
// process group in case anything is left, and reaps chromedriver.
func (wd *webDriver) stop() {
	if wd.stopped {
		return
	}
	wd.stopped = true
	if wd.session != "" && wd.base != "" {
		if err := wd.do(http.MethodDelete, "/session/"+wd.session, nil, nil); err != nil {
			wd.t.Logf("ending the browser session: %v", err)
		}
		wd.session = ""
	}
	wd.tr.CloseIdleConnections()
	if wd.cmd.Process != nil {
		syscall.Kill(-wd.cmd.Process.Pid, syscall.SIGKILL)
		wd.cmd.Wait()
	}
}

// do sends one WebDriver command and decodes the "value" of its answer
// into out (if not nil).
func (wd *webDriver) do(method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, wd.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := wd.c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var env struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return fmt.Errorf("%s %s: %d %q", method, path, resp.StatusCode, raw)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error   string `json:"error"`
			Message string `json:"message"`
		}
		json.Unmarshal(env.Value, &e)
		return fmt.Errorf("%s %s: %d %s: %s", method, path, resp.StatusCode, e.Error, e.Message)
	}
	if out != nil {
		return json.Unmarshal(env.Value, out)
	}
	return nil
}

func (wd *webDriver) sessionDo(method, path string, in, out any) {
	wd.t.Helper()
	if err := wd.do(method, "/session/"+wd.session+path, in, out); err != nil {
		wd.t.Fatal(err)
	}
}

func (wd *webDriver) navigate(url string) {
	wd.t.Helper()
	wd.sessionDo(http.MethodPost, "/url", map[string]any{"url": url}, nil)
}

// script runs a synchronous script in the page and decodes its result.
func (wd *webDriver) script(src string, out any, args ...any) {
	wd.t.Helper()
	if args == nil {
		args = []any{}
	}
	wd.sessionDo(http.MethodPost, "/execute/sync", map[string]any{"script": src, "args": args}, out)
}

// click clicks, as a user would, the element matching a CSS selector.
func (wd *webDriver) click(selector string) {
	wd.t.Helper()
	var el map[string]string
	wd.sessionDo(http.MethodPost, "/element", map[string]any{"using": "css selector", "value": selector}, &el)
	id := el["element-6066-11e4-a52e-4f735466cecf"]
	if id == "" {
		wd.t.Fatalf("no element %s", selector)
	}
	wd.sessionDo(http.MethodPost, "/element/"+id+"/click", map[string]any{}, nil)
}

// fitWindow resizes the window so that the viewport shows the whole page,
// table included, for the screenshot.
func (wd *webDriver) fitWindow() {
	wd.t.Helper()
	var size struct{ W, H, DW, DH int }
	wd.script(`var wrap = document.querySelector(".wrap");
var w = Math.max(document.documentElement.scrollWidth, wrap.scrollWidth + 2 * wrap.getBoundingClientRect().left);
return {W: Math.ceil(w), H: Math.ceil(document.documentElement.scrollHeight),
  DW: window.outerWidth - window.innerWidth, DH: window.outerHeight - window.innerHeight};`, &size)
	wd.sessionDo(http.MethodPost, "/window/rect", map[string]any{"width": size.W + size.DW, "height": size.H + size.DH}, nil)
}

// consoleErrors returns the page's console messages of level SEVERE since
// the last call: script errors, and Content-Security-Policy violations.
func (wd *webDriver) consoleErrors() []string {
	wd.t.Helper()
	var entries []struct {
		Level   string `json:"level"`
		Message string `json:"message"`
	}
	wd.sessionDo(http.MethodPost, "/se/log", map[string]string{"type": "browser"}, &entries)
	var errs []string
	for _, e := range entries {
		if e.Level == "SEVERE" {
			errs = append(errs, e.Message)
		}
	}
	return errs
}

func (wd *webDriver) screenshot() []byte {
	wd.t.Helper()
	var b64 string
	wd.sessionDo(http.MethodGet, "/screenshot", nil, &b64)
	png, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		wd.t.Fatal(err)
	}
	return png
}

// statusPageRow is what the test reads of a row of the page.
type statusPageRow struct {
	URL        string `json:"url"`
	State      string `json:"state"`
	Class      string `json:"cls"`
	Background string `json:"bg"`
	Spark      string `json:"spark"`
	Latency    string `json:"latency"`
	Check      string `json:"check"`
}

type statusPageView struct {
	Conn string          `json:"conn"`
	Rows []statusPageRow `json:"rows"`
}

const statusReadPage = `
var rows = Array.prototype.map.call(document.querySelectorAll("#rows tr"), function (tr) {
  var st = tr.querySelector('[data-k="state"]');
  return {
    url: tr.dataset.backend,
    state: st.textContent,
    cls: st.className,
    bg: getComputedStyle(st).backgroundColor,
    spark: tr.querySelector("polyline").getAttribute("points"),
    latency: tr.querySelector('[data-k="latency"]').textContent,
    check: tr.querySelector('[data-k="check"]').textContent
  };
});
return {conn: document.getElementById("conn").textContent, rows: rows};`

func (wd *webDriver) readPage() statusPageView {
	wd.t.Helper()
	var v statusPageView
	wd.script(statusReadPage, &v)
	return v
}

// waitPage polls the page's DOM (every 50 ms, for up to 15 s) until cond
// holds.
func (wd *webDriver) waitPage(what string, cond func(statusPageView) bool) statusPageView {
	wd.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		v := wd.readPage()
		if cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			wd.t.Fatalf("timed out waiting for the page to show %s; it shows %+v", what, v)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (v statusPageView) row(u string) statusPageRow {
	for _, r := range v.Rows {
		if r.URL == u {
			return r
		}
	}
	return statusPageRow{}
}

func TestStatusPageInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	browser, driver := statusFindBrowser(t)
	shot := os.Getenv("TINYLB_SCREENSHOT") == "1"

	// Three backends with different, slightly noisy latencies, checked
	// actively every 100 ms.
	var backends []*httptest.Server
	var urls []string
	var bes []*lb.Backend
	for i := range 3 {
		base := time.Duration(2*i+1) * time.Millisecond
		var n int
		var mu sync.Mutex
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			n++
			d := base + time.Duration(n*7%5)*base/4
			mu.Unlock()
			time.Sleep(d)
			io.WriteString(w, "ok")
		}))
		defer srv.Close()
		be, err := lb.NewBackend(srv.URL, lb.WithWeight(3-i))
		if err != nil {
			t.Fatal(err)
		}
		backends, urls, bes = append(backends, srv), append(urls, srv.URL), append(bes, be)
	}
	pool, err := lb.NewPool(bes...)
	if err != nil {
		t.Fatal(err)
	}
	check := &health.HTTPCheck{Path: "/", Interval: 100 * time.Millisecond, Fall: 1, Rise: 1, Jitter: -1}
	bal := lb.New(pool, lb.SmoothWeighted(), lb.WithHealthCheck(check))
	defer bal.Close()

	loopback := func(r *http.Request) bool {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		return err == nil && net.ParseIP(host).IsLoopback()
	}
	mux := http.NewServeMux()
	mux.Handle("/status/", http.StripPrefix("/status", lb.StatusHandler(bal,
		lb.WithStatusTitle("tinylb status · demo"), lb.WithStatusActions(loopback))))
	mux.Handle("/", bal)
	front := httptest.NewServer(mux)
	defer front.Close()

	// Steady traffic through the balancer while the page is open.
	stop := make(chan struct{})
	var traffic sync.WaitGroup
	tr := &http.Transport{MaxIdleConnsPerHost: 4}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	for range 2 {
		traffic.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(15 * time.Millisecond):
				}
				if resp, err := client.Get(front.URL + "/"); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		})
	}
	defer traffic.Wait()
	defer close(stop)

	start := time.Now()
	wd := startWebDriver(t, browser, driver, 1280, 600)
	defer wd.stop()
	t.Logf("browser up in %v", time.Since(start).Round(time.Millisecond))
	wd.navigate(front.URL + "/status/")

	v := wd.waitPage("3 rows up, refreshed from the JSON", func(v statusPageView) bool {
		if v.Conn != "live" || len(v.Rows) != 3 {
			return false
		}
		for _, r := range v.Rows {
			if r.State != "up" || r.Spark == "" {
				return false
			}
		}
		return true
	})
	for i, r := range v.Rows {
		if r.URL != urls[i] || r.Class != "state st-up" {
			t.Errorf("row %d: %+v; want %s in class st-up", i, r, urls[i])
		}
		if r.Background == "" || r.Background == "rgba(0, 0, 0, 0)" {
			t.Errorf("row %d: state badge unstyled (background %q): the stylesheet did not apply", i, r.Background)
		}
	}

	if shot {
		time.Sleep(12 * time.Second) // sparkline history for the picture
	}

	// Backend 1 goes down: its server stops and the health check sees it.
	backends[1].Close()
	// Backend 2 is drained from the page itself, as an operator would.
	wd.click(fmt.Sprintf(`tr[data-backend=%q] button[value="drain"]`, urls[2]))

	v = wd.waitPage("backend 1 down and backend 2 draining", func(v statusPageView) bool {
		return v.row(urls[1]).State == "down" && v.row(urls[2]).State == "draining"
	})
	if r := v.row(urls[1]); r.Class != "state st-down" || !strings.Contains(r.Check, "failed") {
		t.Errorf("down row: %+v; want class st-down and a failed check", r)
	}
	if r := v.row(urls[2]); r.Class != "state st-draining" {
		t.Errorf("draining row: %+v; want class st-draining", r)
	}
	if r := v.row(urls[0]); r.State != "up" {
		t.Errorf("row 0: %+v; want up", r)
	}
	if errs := wd.consoleErrors(); len(errs) > 0 {
		t.Errorf("errors in the page's console:\n%s", strings.Join(errs, "\n"))
	}
	if st := bal.Stats(); st.Backends[2].State != lb.StateDraining {
		t.Errorf("balancer says backend 2 is %v after the page's drain; want draining", st.Backends[2].State)
	}
	if shot {
		time.Sleep(1500 * time.Millisecond) // let the banner and rates settle
	}

	wd.fitWindow()
	png := wd.screenshot()
	if !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("screenshot is not a PNG: %q", png[:min(len(png), 16)])
	}
	path := filepath.Join(t.TempDir(), "status.png")
	if shot {
		if err := os.MkdirAll("docs", 0o755); err != nil {
			t.Fatal(err)
		}
		path = filepath.Join("docs", "status.png")
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes); test ran %v", path, len(png), time.Since(start).Round(time.Millisecond))

	wd.stop()
	// Nothing the test started may outlive it: not chromedriver, not a
	// browser process (all of which name the profile directory in their
	// command line, the crash handler that leaves the process group too).
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := statusProcessesMentioning(wd.dir)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("browser processes left running: %v", left)
			for _, pid := range left {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// statusProcessesMentioning returns the live (not zombie) processes whose
// command line contains s, on systems with a Linux-style /proc; elsewhere
// none.
func statusProcessesMentioning(s string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte(s)) {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ...: comm may hold anything, so read after the
		// last parenthesis.
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}
