package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCodeReload: `edgectl run --reload` restarts the workers when the app's
// code changes, and SIGHUP does too; neither fails a request.
func TestCodeReload(t *testing.T) {
	appDir := t.TempDir()
	src, err := os.ReadFile(filepath.Join(repoRoot, "testdata", "apps", "factory.py"))
	if err != nil {
		t.Fatal(err)
	}
	appFile := filepath.Join(appDir, "factory.py")
	os.WriteFile(appFile, src, 0o644)
	s := startSuite(t, suiteOpts{module: "factory:create_app()", appDir: appDir, workers: 2, args: []string{"--reload"}})
	l := startLoad(s.client(), s.http+"/", 4)
	l.waitAnswer(t, "hello", 10*time.Second)

	edit := func(from, to string) {
		b, _ := os.ReadFile(appFile)
		os.WriteFile(appFile, []byte(strings.Replace(string(b), from, to, 1)), 0o644)
	}
	edit(`greeting="hello"`, `greeting="edited"`)
	took := l.waitAnswer(t, "edited", 15*time.Second)
	t.Logf("the edit answered after %v", took)

	// An edit that breaks the app: the workers keep the code they have.
	edit(`greeting="edited"`, `greeting="edited"(`)
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(s.out.String(), "the running ones keep serving") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(s.out.String(), "the running ones keep serving") {
		t.Errorf("a broken edit was not reported")
	}
	edit(`greeting="edited"(`, `greeting="mended"`)
	l.waitAnswer(t, "mended", 15*time.Second)

	// SIGHUP restarts them too, one at a time.
	before := strings.Count(s.out.String(), `"why":"SIGHUP"`)
	s.cmd.Process.Signal(syscall.SIGHUP)
	deadline = time.Now().Add(15 * time.Second)
	for strings.Count(s.out.String(), "every worker restarted") < 3 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := strings.Count(s.out.String(), `"why":"SIGHUP"`); n != before+1 {
		t.Errorf("SIGHUP did not restart the workers")
	}
	time.Sleep(500 * time.Millisecond)
	ok, bad, errs := l.finish()
	if bad != 0 {
		t.Errorf("%d of %d requests failed during the restarts: %v", bad, ok+bad, errs)
	}
	t.Logf("%d requests, none failed", ok)
}

// TestOneLogStream: with an app that prints, logs and raises, every line
// the suite writes in JSON mode is a JSON event, and a traceback is one
// event.
func TestOneLogStream(t *testing.T) {
	s := startSuite(t, suiteOpts{workers: 1})
	c := s.client()
	for _, path := range []string{"/chatty", "/boom", "/hello"} {
		get(t, c, s.http+path)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(s.out.String(), "straight to stderr") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	s.stop()
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(s.out.String()), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Errorf("not a JSON event: %q", line)
			continue
		}
		msg, _ := ev["message"].(string)
		tb, _ := ev["traceback"].(string)
		for _, want := range []string{"a line from print()", "a warning from the app's logger", "straight to stderr", "two lines"} {
			if strings.Contains(msg, want) {
				seen[want] = true
				if ev["worker"] == nil || ev["stream"] == nil {
					t.Errorf("app output without the worker's fields: %s", line)
				}
			}
		}
		if strings.Contains(tb, "boom: the app failed on purpose") {
			seen["traceback"] = true
			if !strings.Contains(tb, "Traceback (most recent call last):") || !strings.Contains(tb, "in boom") {
				t.Errorf("the traceback is not whole in its event: %q", tb)
			}
		}
	}
	for _, want := range []string{"a line from print()", "a warning from the app's logger", "straight to stderr", "two lines", "traceback"} {
		if !seen[want] {
			t.Errorf("no event for %q in:\n%s", want, s.out.String())
		}
	}
}
