package local

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/edged/edged/pkg/logging"
)

func TestEventsLinesWhole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.log")
	var term bytes.Buffer // written under the stream's lock, read after close
	ev, err := openEvents(path, &term, &term)
	if err != nil {
		t.Fatal(err)
	}
	// Two children write at once, one of them lines longer than a
	// pipe's atomic write and the reader's buffer: no line is split
	// or mixed with the other's.
	long := `{"message":"` + strings.Repeat("x", 200<<10) + `"}` + "\n"
	short := `{"message":"short"}` + "\n"
	var wg sync.WaitGroup
	for _, line := range []string{long, short} {
		w, err := ev.pipe()
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.Close()
			for range 20 {
				w.WriteString(line)
			}
			w.WriteString(`{"message":"no newline at the end"}`)
		}()
	}
	wg.Wait()
	ev.close()
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(file, term.Bytes()) {
		t.Error("the file and the terminal got different lines")
	}
	lines := strings.SplitAfter(string(file), "\n")
	counts := map[string]int{}
	for _, l := range lines {
		if l != "" {
			counts[l]++
		}
	}
	end := `{"message":"no newline at the end"}` + "\n"
	if counts[long] != 20 || counts[short] != 20 || counts[end] != 2 || len(counts) != 3 {
		t.Errorf("lines: %d long, %d short, %d ends, %d kinds; want 20, 20, 2, 3 (a line was split or mixed)", counts[long], counts[short], counts[end], len(counts))
	}
}

// A renderer that refuses a line (a Go panic's trace is not an event)
// does not keep it from the terminal.
func TestEventsUnrendered(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.log")
	var term bytes.Buffer // written under the stream's lock, read after close
	ev, err := openEvents(path, logging.Console(&term), &term)
	if err != nil {
		t.Fatal(err)
	}
	ev.Write([]byte(`{"level":"info","message":"an event"}` + "\n"))
	ev.Write([]byte("panic: runtime error: index out of range\n"))
	ev.close()
	if got := term.String(); !strings.Contains(got, "INF an event") || !strings.Contains(got, "\npanic: runtime error: index out of range\n") {
		t.Errorf("the terminal got:\n%s", got)
	}
}

func TestEventsRotate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.log")
	var term bytes.Buffer // written under the stream's lock, read after close
	ev, err := openEvents(path, &term, &term)
	if err != nil {
		t.Fatal(err)
	}
	ev.max = 100
	line := []byte(`{"message":"` + strings.Repeat("y", 30) + `"}` + "\n") // 46 bytes
	for range 5 {
		ev.Write(line)
	}
	ev.close()
	cur, _ := os.ReadFile(path)
	old, _ := os.ReadFile(path + ".1")
	// 2 lines fit 100 bytes: 2 in .1 (the first two went to a .1
	// replaced since), 1 in the current file.
	if got, want := len(cur)/len(line), 1; got != want {
		t.Errorf("current file: %d lines, want %d", got, want)
	}
	if got, want := len(old)/len(line), 2; got != want {
		t.Errorf("%s.1: %d lines, want %d", path, got, want)
	}
	if got := strings.Count(term.String(), "\n"); got != 5 {
		t.Errorf("the terminal got %d lines, want 5", got)
	}
}

func TestRunPointer(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", dir)
	if _, err := RunEvents(); !errors.Is(err, ErrNoRun) {
		t.Fatalf("RunEvents with no run = %v, want ErrNoRun", err)
	}
	events := filepath.Join(dir, "events.log")
	os.WriteFile(events, nil, 0o600)
	done, err := writePointer(events)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := RunEvents(); err != nil || got != events {
		t.Errorf("RunEvents = %q, %v; want %q", got, err, events)
	}
	// The run gone: its pid no longer runs.
	p, _ := RunPointer()
	os.WriteFile(p, []byte("999999999\n"+events+"\n"), 0o600)
	if _, err := RunEvents(); !errors.Is(err, ErrNoRun) {
		t.Errorf("RunEvents naming a dead run = %v, want ErrNoRun", err)
	}
	// Another run wrote the pointer since: this run's end leaves it.
	done()
	if _, err := os.Stat(p); err != nil {
		t.Errorf("the pointer of another run was removed: %v", err)
	}
	os.WriteFile(p, []byte("garbage"), 0o600)
	if _, err := RunEvents(); err == nil || errors.Is(err, ErrNoRun) || !strings.Contains(err.Error(), "remove it") {
		t.Errorf("RunEvents on a broken pointer = %v, want an error saying to remove it", err)
	}
	os.Remove(p)
	done, err = writePointer(events)
	if err != nil {
		t.Fatal(err)
	}
	done()
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Errorf("the run's own pointer was left: %v", err)
	}
}
