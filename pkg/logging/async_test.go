package logging

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// blockingWriter holds every write until released, as a pipe whose reader
// is busy does.
type blockingWriter struct {
	release chan struct{}
	mu      sync.Mutex
	writes  []string
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes = append(w.writes, string(p))
	return len(p), nil
}

// A writer that never takes anything holds no Write: lines past the
// queue are dropped and counted, and those queued come out whole, in
// order, in writes of at most PIPE_BUF, once it takes them.
func TestAsync(t *testing.T) {
	bw := &blockingWriter{release: make(chan struct{})}
	a := NewAsync(bw, 100)
	var told []uint64
	var toldMu sync.Mutex
	a.OnDrop = func(n uint64) { toldMu.Lock(); told = append(told, n); toldMu.Unlock() }
	start := time.Now()
	for i := range 1000 {
		fmt.Fprintf(a, "line %04d %s\n", i, strings.Repeat("x", 100))
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("1000 writes to a stuck writer took %v, want no wait", took)
	}
	if d := a.Dropped(); d < 800 || d > 900 {
		t.Errorf("dropped %d of 1000 with a queue of 100, want about 899", d)
	}
	close(bw.release)
	a.Close()
	var all bytes.Buffer
	for _, w := range bw.writes {
		if len(w) > pipeBuf {
			t.Errorf("a write of %d bytes, want at most %d", len(w), pipeBuf)
		}
		if !strings.HasSuffix(w, "\n") {
			t.Errorf("a write that ends mid-line: %q", w[max(0, len(w)-20):])
		}
		all.WriteString(w)
	}
	lines := strings.Split(strings.TrimSuffix(all.String(), "\n"), "\n")
	if uint64(len(lines))+a.Dropped() != 1000 {
		t.Errorf("%d lines written and %d dropped, want 1000 in all", len(lines), a.Dropped())
	}
	for i := 1; i < len(lines); i++ {
		if lines[i] <= lines[i-1] {
			t.Fatalf("line %q after %q: out of order", lines[i], lines[i-1])
		}
	}
	toldMu.Lock()
	defer toldMu.Unlock()
	if len(told) == 0 || told[0] == 0 {
		t.Errorf("OnDrop told %v, want the drops", told)
	}
}

// Close writes everything queued before it returns.
func TestAsyncCloseFlushes(t *testing.T) {
	var buf bytes.Buffer
	a := NewAsync(&buf, 1000)
	for i := range 500 {
		fmt.Fprintf(a, "%d\n", i)
	}
	a.Close()
	if n := strings.Count(buf.String(), "\n"); n != 500 {
		t.Errorf("%d lines after Close, want 500", n)
	}
	fmt.Fprintf(a, "after\n") // queued, never written, no panic
}
