package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAccessFile: with log.access_file, the access log goes to the file
// and not to the main log; after the file is renamed (logrotate), a
// reload writes a new one; the shipped logrotate snippet loads.
func TestAccessFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "access.log")
	s := startSuite(t, suiteOpts{module: "sample:app", workers: 1, extra: "access = true\naccess_file = \"" + file + "\"\n"})
	c := s.client()
	lines := func(path, want string) bool {
		b, _ := os.ReadFile(path)
		return strings.Contains(string(b), want)
	}
	waitLine := func(path, want string) {
		t.Helper()
		for end := time.Now().Add(10 * time.Second); !lines(path, want); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(end) {
				b, _ := os.ReadFile(path)
				t.Fatalf("%s has no %q:\n%s", path, want, b)
			}
		}
	}
	get(t, c, s.http+"/whoami?before")
	waitLine(file, `"query":"before"`)
	if b, _ := os.ReadFile(file); !strings.Contains(string(b), `"log":"access"`) || !strings.Contains(string(b), `"status":200`) {
		t.Errorf("the access file's line: %s", b)
	}
	if strings.Contains(s.out.String(), `"log":"access"`) {
		t.Errorf("access events reached the main log as well:\n%s", tail(s.out.String(), 10))
	}

	// logrotate renames the file, then asks for a reload.
	if err := os.Rename(file, file+".1"); err != nil {
		t.Fatal(err)
	}
	reloads := strings.Count(s.out.String(), `"message":"reloaded"`)
	get(t, c, s.http+"/whoami?between") // after the rename, before the reload
	s.cmd.Process.Signal(syscall.SIGHUP)
	for end := time.Now().Add(15 * time.Second); strings.Count(s.out.String(), `"message":"reloaded"`) == reloads; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("edged did not reload:\n%s", tail(s.out.String(), 20))
		}
	}
	get(t, c, s.http+"/whoami?after")
	waitLine(file, `"query":"after"`)
	waitLine(file+".1", `"query":"between"`)
	if lines(file+".1", `"query":"after"`) || lines(file, `"query":"between"`) {
		t.Errorf("lines went to the wrong file: a line before the reload belongs to the renamed one, after it to the new one")
	}

	// The shipped snippet, as logrotate reads it.
	logrotate := needTool(t, "logrotate")
	if out, err := exec.Command(logrotate, "--debug", filepath.Join(repoRoot, "packaging/logrotate/edged")).CombinedOutput(); err != nil {
		t.Errorf("logrotate --debug packaging/logrotate/edged: %v\n%s", err, out)
	}
}
