package backlog

import (
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Connections nobody accepts wait in the queue: each reader sees them,
// and the backlog the listener was made with.
func TestQueues(t *testing.T) {
	// TCP: net.Listen takes the system's somaxconn as its backlog.
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	path := filepath.Join(t.TempDir(), "q.sock")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 7); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		c, err := net.Dial("tcp", tl.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		u, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
	}
	time.Sleep(50 * time.Millisecond) // the handshakes complete
	q, err := TCP(tl.(*net.TCPListener))
	if err != nil {
		t.Fatal(err)
	}
	if q.Waiting != 3 || q.Max == 0 {
		t.Errorf("TCP queue %+v, want 3 waiting and a backlog", q)
	}
	qs, err := Unix()
	if err != nil {
		t.Fatal(err)
	}
	if got := qs[path]; got != (Queue{Waiting: 3, Max: 7}) {
		t.Errorf("Unix queue of %s: %+v, want 3 waiting of 7", path, got)
	}
	if _, _, err := Overflows(); err != nil {
		t.Errorf("Overflows: %v", err)
	}
}
