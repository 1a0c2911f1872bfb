//go:build unix

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests run main in a process of its own (the test binary, see
// TestMain), to check what only a process shows: the exit status, and
// the signals.

// tinylb returns a command running main with args.
func tinylb(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	raw, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "TINYLB_TEST_MAIN_ARGS="+string(raw))
	return cmd
}

func TestProcessBadConfigExits2(t *testing.T) {
	path := writeConfig(t, `{"listen": "127.0.0.1:0", "backends": [{"url": "http://127.0.0.1:9001"}, {"url": "http://127.0.0.1:9002", "weight": 0}]}`)
	cmd := tinylb(t, "-config", path)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("tinylb with a bad config: %v, want exit status 2\n%s", err, out)
	}
	want := "tinylb: " + path + ": backends[1].weight: 0: must be between 1 and 1000\nRun 'tinylb -h' for usage.\n"
	if string(out) != want {
		t.Errorf("output:\n%s\nwant\n%s", out, want)
	}
}

// A listen address the proxy could never listen on is a bad flag, found
// before anything starts: exit status 2, with the binary's name, tinylb,
// whatever its file is called (here, the test binary).
func TestProcessBadListenExits2(t *testing.T) {
	out, err := tinylb(t, "-listen", "127.0.0.1:99999", "-backend", "http://127.0.0.1:9001").CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "output:\n%s", out)
	assert.Equal(t, 2, ee.ExitCode(), "output:\n%s", out)
	assert.Equal(t, "tinylb: -listen: \"127.0.0.1:99999\": port must be between 1 and 65535, or 0 for any free port\n"+
		"Run 'tinylb -h' for usage.\n", string(out))
}

// logWatcher collects the log lines of a process (it is its Stderr) and
// tells when a line matching a pattern has come.
type logWatcher struct {
	t       *testing.T
	mu      sync.Mutex
	partial []byte
	lines   []string
	next    int           // lines before this one were matched by wait
	more    chan struct{} // closed and replaced at each line
}

func newLogWatcher(t *testing.T) *logWatcher {
	return &logWatcher{t: t, more: make(chan struct{})}
}

func (w *logWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(w.partial[:i])
		w.partial = w.partial[i+1:]
		w.t.Log(line)
		w.lines = append(w.lines, line)
		close(w.more)
		w.more = make(chan struct{})
	}
}

// wait returns the first submatch (or the match) of the first line
// matching re after the line the last wait matched, waiting up to 10s
// for it.
func (w *logWatcher) wait(re string) string {
	w.t.Helper()
	rx := regexp.MustCompile(re)
	timeout := time.After(10 * time.Second)
	for {
		w.mu.Lock()
		for i := w.next; i < len(w.lines); i++ {
			if m := rx.FindStringSubmatch(w.lines[i]); m != nil {
				w.next = i + 1
				w.mu.Unlock()
				return m[len(m)-1]
			}
		}
		more := w.more
		w.mu.Unlock()
		select {
		case <-more:
		case <-timeout:
			w.t.Fatalf("no log line matching %q", re)
		}
	}
}

func TestProcessReloadAndShutdown(t *testing.T) {
	a, b := newSlowBackend(t), newCheckedBackend(t, "b")
	path := writeConfig(t, fmt.Sprintf(`{"listen": "127.0.0.1:0", "strategy": "swrr", "backends": [{"url": %q}]}`, a.URL))
	cmd := tinylb(t, "-config", path, "-shutdown-timeout", "5s")
	logs := newLogWatcher(t)
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	url := "http://" + logs.wait(`msg="tinylb listening" addr=(\S+)`)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Timeout: 10 * time.Second, Transport: tr}

	// SIGHUP applies the file's new backend list: b, at weight 3.
	rewrite(t, path, fmt.Sprintf(`{"listen": "127.0.0.1:0", "strategy": "swrr", "backends": [{"url": %q}, {"url": %q, "weight": 3}]}`, a.URL, b.URL))
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	logs.wait(`msg="config reloaded"`)
	if got := spread(t, client, url+"/", 8); got["a"] == 0 || got["b"] < 2*got["a"] {
		t.Errorf("8 requests after the reload went %v, want about a:2 b:6", got)
	}

	// A bad file is rejected; the process goes on serving both.
	rewrite(t, path, `{"listen": "127.0.0.1:0", "strategy": "swrr", "backends": [{"url": "http://127.0.0.1:1", "wieght": 2}]}`)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	logs.wait(`level=ERROR msg="config reload rejected.*backends\[0\]\.wieght: unknown field`)
	if got := spread(t, client, url+"/", 4); got["a"]+got["b"] != 4 || got["b"] == 0 {
		t.Errorf("4 requests after a rejected reload went %v, want them over a and b", got)
	}

	// b goes away, and the slow request below goes to a.
	rewrite(t, path, fmt.Sprintf(`{"listen": "127.0.0.1:0", "strategy": "swrr", "backends": [{"url": %q}]}`, a.URL))
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	logs.wait(`msg="config reloaded".* removed=\[` + regexp.QuoteMeta(b.URL) + `\]`)

	// SIGTERM lets the request in flight finish, then exits 0.
	res := goDo(client, http.MethodGet, url+"/slow")
	<-a.arrived
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	logs.wait(`msg="shutting down"`)
	a.release()
	if got := <-res; got.err != nil || got.status != http.StatusOK || got.body != "slow" {
		t.Errorf("request in flight at SIGTERM: status %d, body %q, error %v; want 200 \"slow\"", got.status, got.body, got.err)
	}
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Errorf("tinylb after SIGTERM: %v, want exit status 0", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tinylb did not exit within 10s of SIGTERM")
	}
	logs.wait(`msg=stopped`)
	if _, _, err := do(client, http.MethodGet, url); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("request after the exit: %v, want connection refused", err)
	}
}
