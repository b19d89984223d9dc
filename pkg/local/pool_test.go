package local

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// A worker keeps telling its notify socket how it is (STATUS= every few
// seconds, as workerd does): the socket must be read for as long as the
// worker lives. Regression: it was read only until READY=1, and after ten
// more messages the worker blocked in its next notification for good.
func TestPoolReadsNotificationsToTheEnd(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3")
	}
	bin := t.TempDir()
	// A stand-in for workerd: ready, then many status lines, then exit.
	script := "#!" + py + `
import os, socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
a = os.environ["NOTIFY_SOCKET"]
s.sendto(b"READY=1\nSTATUS=up", a)
for i in range(200):
    s.sendto(b"STATUS=%d" % i, a)
`
	if err := os.WriteFile(filepath.Join(bin, "workerd"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := &pool{o: Options{BinDir: bin, SocketDir: t.TempDir(), Stdout: os.Stdout, Stderr: os.Stderr},
		ctx: ctx, log: zerolog.Nop(), slots: make([]*worker, 1)}
	w, err := p.start(1)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.ready:
	case <-time.After(10 * time.Second):
		t.Fatal("no READY=1")
	}
	select {
	case err := <-w.done:
		if err != nil {
			t.Errorf("the worker exited with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the worker hung on its notify socket after READY=1")
	}
}
