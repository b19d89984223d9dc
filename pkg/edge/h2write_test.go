package edge

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// What is written while the last write is on its way goes out together,
// in order; Close sends what is pending first.
func TestH2WriterGathers(t *testing.T) {
	ours, peer := net.Pipe()
	c := &countingConn{Conn: ours}
	w := newH2Writer(c, func() time.Duration { return 5 * time.Second })
	var want bytes.Buffer
	// net.Pipe's writes wait for the reader: the first is on its way
	// while the rest are written.
	for i := range 100 {
		p := []byte(strings.Repeat(string(rune('a'+i%26)), 100+i))
		want.Write(p)
		if n, err := w.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write %d = %d, %v", i, n, err)
		}
	}
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(peer)
		got <- b
	}()
	if err := w.Close(time.Second); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Errorf("the peer read %d bytes, want the %d written, in order", len(b), want.Len())
	}
	if n := c.writes.Load(); n > 5 {
		t.Errorf("100 writes reached the connection as %d, want them gathered (a few)", n)
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close = %v, want net.ErrClosed", err)
	}
}

// A peer that reads nothing holds Close no longer than its wait, and a
// write that cannot go out fails the writes after it.
func TestH2WriterStuckPeer(t *testing.T) {
	ours, peer := net.Pipe()
	defer peer.Close()
	w := newH2Writer(ours, func() time.Duration { return 100 * time.Millisecond })
	if _, err := w.Write([]byte("never read")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	var err error
	for err == nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		_, err = w.Write([]byte("more"))
	}
	if err == nil {
		t.Fatalf("writes to a peer that reads nothing still succeed after send_timeout (100ms)")
	}

	// Close returns at once (net/http closes idle connections one after
	// the other), and the connection is closed after its wait.
	ours2, peer2 := net.Pipe()
	defer peer2.Close()
	w2 := newH2Writer(ours2, func() time.Duration { return time.Minute })
	w2.Write([]byte("never read"))
	start := time.Now()
	w2.Close(200 * time.Millisecond)
	if took := time.Since(start); took > 50*time.Millisecond {
		t.Errorf("Close took %v with a peer that reads nothing, want it to return at once", took)
	}
	for {
		if _, err := ours2.Write(nil); err != nil {
			break // closed
		}
		if time.Since(start) > 2*time.Second {
			t.Fatalf("the connection is still open %v after Close(200ms)", time.Since(start))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := w2.Write([]byte("x")); !errors.Is(err, net.ErrClosed) && err == nil {
		t.Errorf("Write after Close = %v, want an error", err)
	}
}
