package logging

import (
	"bytes"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// Entries go out in one call, in order; one too big for a datagram is
// said to be, and those after it still go.
func TestBatchSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.sock")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.SetReadBuffer(4 << 20)
	s := batchSocket{path: path, fd: -1}
	big := bytes.Repeat([]byte("x"), 8<<20)
	bufs := [][]byte{[]byte("A=1\n"), []byte("B=2\n"), big, []byte("C=3\n")}
	n, err := s.send(bufs)
	if n != 2 || err != errTooBig {
		t.Fatalf("send = %d, %v; want 2 sent, then errTooBig", n, err)
	}
	if n, err = s.send(bufs[3:]); n != 1 || err != nil {
		t.Fatalf("send after = %d, %v", n, err)
	}
	l.SetReadDeadline(time.Now().Add(2 * time.Second))
	for _, want := range []string{"A=1\n", "B=2\n", "C=3\n"} {
		b := make([]byte, 64)
		n, err := l.Read(b)
		if err != nil || string(b[:n]) != want {
			t.Errorf("read %q, %v; want %q", b[:n], err, want)
		}
	}
}
