package e2e

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A large static file goes out with sendfile, its bytes never copied
// through edged: strace counts edged's system calls while five 1 MiB
// files are fetched. (Before, a wrapper hid the connection's ReadFrom
// from net/http: about 170 writes and no sendfile.)
func TestStaticSendfile(t *testing.T) {
	if _, err := exec.LookPath("strace"); err != nil {
		t.Skipf("SKIPPED: no strace (`make deps` installs it)")
	}
	s := startSuite(t, suiteOpts{module: "sample:app", workers: 1})
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	s.writeStatic("big.bin", big)
	pid := s.edgedPID(t)

	strace := exec.Command("strace", "-f", "-c", "-e", "trace=sendfile,write,writev", "-p", strconv.Itoa(pid))
	var out bytes.Buffer
	strace.Stdout, strace.Stderr = &out, &out
	if err := strace.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // attached
	c := s.client()
	for i := 0; i < 5; i++ {
		resp, err := c.Get(s.http + "/static/big.bin")
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Equal(got, big) {
			t.Fatalf("fetch %d: %d bytes, want the file's %d", i, len(got), len(big))
		}
	}
	strace.Process.Signal(syscall.SIGINT)
	strace.Wait()
	if strings.Contains(out.String(), "Operation not permitted") {
		t.Skipf("SKIPPED: strace may not attach here:\n%s", out.String())
	}
	calls := map[string]int{}
	for _, m := range regexp.MustCompile(`(?m)^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$`).FindAllStringSubmatch(out.String(), -1) {
		n, _ := strconv.Atoi(m[1])
		calls[m[2]] = n
	}
	if calls["sendfile"] < 5 {
		t.Errorf("sendfile calls: %d, want at least one per fetch (strace:\n%s)", calls["sendfile"], out.String())
	}
	if w := calls["write"] + calls["writev"]; w > 40 {
		t.Errorf("%d writes for five 1 MiB files: the bytes went through edged (strace:\n%s)", w, out.String())
	}
}

// edgedPID is the pid of the suite's edged.
func (s *suite) edgedPID(t *testing.T) int {
	t.Helper()
	for _, pid := range readProcs().tree(s.cmd.Process.Pid)[1:] {
		cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if args := strings.Split(string(cmdline), "\x00"); strings.HasSuffix(args[0], "/edged") {
			return pid
		}
	}
	t.Fatal("no edged below edgectl run")
	return 0
}
