package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRunLogs: under edgectl run, edgectl logs reads the run's own
// stream, as it reads the journal under systemd: everything about one
// request (edged's access event and the app's traceback) by its id,
// errors only, followed; found with no flag while the run is up.
func TestRunLogs(t *testing.T) {
	rt := t.TempDir() // this run's XDG_RUNTIME_DIR: its pointer, no other run's
	env := []string{"XDG_RUNTIME_DIR=" + rt}
	s := startSuite(t, suiteOpts{workers: 1, extra: "access = true", env: env})
	c := s.client()
	if code, _ := get(t, c, s.http+"/boom"); code != 500 {
		t.Fatalf("GET /boom = %d, want 500", code)
	}
	get(t, c, s.http+"/hello")

	// The id edged gave the failing request, from its access event.
	var id string
	for end := time.Now().Add(10 * time.Second); id == ""; time.Sleep(50 * time.Millisecond) {
		for _, line := range strings.Split(s.out.String(), "\n") {
			var ev map[string]any
			if json.Unmarshal([]byte(line), &ev) == nil && ev["log"] == "access" && ev["path"] == "/boom" {
				id, _ = ev["request_id"].(string)
			}
		}
		if time.Now().After(end) {
			t.Fatalf("no access event for /boom:\n%s", tail(s.out.String(), 20))
		}
	}
	edgectl := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(filepath.Join(binDir, "edgectl"), append([]string{"logs"}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("edgectl logs %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// The traceback reaches the stream a moment after the answer.
	var byID string
	for end := time.Now().Add(10 * time.Second); !strings.Contains(byID, "RuntimeError"); time.Sleep(100 * time.Millisecond) {
		byID = edgectl("--request", id, "-o", "json")
		if time.Now().After(end) {
			t.Fatalf("edgectl logs --request %s has no traceback:\n%s", id, byID)
		}
	}
	var access, traceback int
	for _, line := range strings.Split(strings.TrimSpace(byID), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("-o json gave a line that is not an event: %q", line)
		}
		if ev["request_id"] != id {
			t.Errorf("--request %s gave another request's event: %s", id, line)
		}
		if ev["log"] == "access" && ev["status"] == 500.0 {
			access++
		}
		if tb, _ := ev["traceback"].(string); strings.Contains(tb, "RuntimeError: boom") {
			traceback++
		}
	}
	if access != 1 || traceback != 1 {
		t.Errorf("--request %s: %d access events and %d tracebacks, want 1 and 1:\n%s", id, access, traceback, byID)
	}

	errs := edgectl("--errors", "-o", "cat")
	if !strings.Contains(errs, "GET /boom 500") || !strings.Contains(errs, "RuntimeError: boom: the app failed on purpose") || strings.Contains(errs, "/hello") {
		t.Errorf("edgectl logs --errors:\n%s", errs)
	}

	// Followed: a new failure shows up, nothing else does.
	var followed syncBuffer
	f := exec.Command(filepath.Join(binDir, "edgectl"), "logs", "-f", "--errors", "-n", "0", "-o", "cat")
	f.Env = append(os.Environ(), env...)
	f.Stdout, f.Stderr = &followed, &followed
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	defer f.Process.Kill()
	time.Sleep(500 * time.Millisecond)
	get(t, c, s.http+"/hello")
	get(t, c, s.http+"/boom")
	for end := time.Now().Add(10 * time.Second); !strings.Contains(followed.String(), "RuntimeError"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("edgectl logs -f did not show the new failure:\n%s", followed.String())
		}
	}
	f.Process.Signal(syscall.SIGINT)
	if err := f.Wait(); err != nil {
		t.Errorf("edgectl logs -f after Ctrl-C: %v\n%s", err, followed.String())
	}
	if got := followed.String(); strings.Count(got, "GET /boom 500") != 1 || strings.Contains(got, "/hello") {
		t.Errorf("edgectl logs -f --errors -n 0:\n%s", got)
	}
}
