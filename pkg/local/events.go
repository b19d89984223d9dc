package local

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxEventsFile is the size at which the events file is renamed to
// NAME.1 (replacing the one before) and started again: edgectl logs reads
// both, so at most twice this stays on disk.
const maxEventsFile = 32 << 20

// events is edgectl run's own stream, as the journal is under systemd:
// every line edged and the workers write passes through it, on to the
// terminal (rendered for a person when it is one) and into a file that
// edgectl logs filters by site, request or priority.
type events struct {
	path string
	max  int64

	mu   sync.Mutex
	out  io.Writer // the terminal's writer: rendered or raw lines
	raw  io.Writer // the terminal itself, for a line out cannot render
	file *os.File  // nil once writing it failed: the terminal still gets every line
	size int64
	wg   sync.WaitGroup
}

// openEvents appends to the events file at path (made if missing, for
// this user only) and copies each line to out; a line out refuses (a
// renderer given what is not an event: a Go panic's trace) goes to raw
// as it is.
func openEvents(path string, out, raw io.Writer) (*events, error) {
	e := &events{path: path, out: out, raw: raw, max: maxEventsFile}
	if err := e.open(); err != nil {
		return nil, fmt.Errorf("edgectl run's events file: %w", err)
	}
	return e, nil
}

func (e *events) open() error {
	f, err := os.OpenFile(e.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	e.file, e.size = f, st.Size()
	return nil
}

// pipe is a write end for one child's stdout and stderr; what it writes
// goes through the stream, a line at a time, until every holder of the
// write end has closed it. The caller closes its own copy once the child
// has started.
func (e *events) pipe() (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer r.Close()
		e.copy(r)
	}()
	return w, nil
}

// copy passes r's lines on, whole: a line of any length (a traceback's
// event) is never split or interleaved with another child's.
func (e *events) copy(r io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	var long []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long, chunk...)
			continue
		}
		line := chunk
		if long != nil {
			line = append(long, chunk...)
			long = nil
		}
		if len(line) > 0 {
			if line[len(line)-1] != '\n' {
				line = append(line, '\n') // the last line of a child that died mid-line
			}
			e.line(line)
		}
		if err != nil {
			return
		}
	}
}

// line writes one line to the terminal and to the file.
func (e *events) line(b []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, err := e.out.Write(b); err != nil && e.raw != nil {
		e.raw.Write(b)
	}
	if e.file == nil {
		return
	}
	if e.size+int64(len(b)) > e.max && e.size > 0 {
		e.file.Close()
		e.file = nil
		os.Rename(e.path, e.path+".1")
		if err := e.open(); err != nil {
			fmt.Fprintf(e.out, "edgectl run: events file %s: %v; edgectl logs no longer sees new events\n", e.path, err)
			return
		}
	}
	n, err := e.file.Write(b)
	e.size += int64(n)
	if err != nil {
		fmt.Fprintf(e.out, "edgectl run: events file %s: %v; edgectl logs no longer sees new events\n", e.path, err)
		e.file.Close()
		e.file = nil
	}
}

// Write takes one of edgectl run's own events (zerolog writes an event
// a call).
func (e *events) Write(p []byte) (int, error) {
	e.line(p)
	return len(p), nil
}

// close waits for every pipe's reader (their children gone) and closes
// the file. A process that still holds a pipe (a grandchild that kept
// its parent's stderr) is not waited for past a few seconds.
func (e *events) close() {
	done := make(chan struct{})
	go func() {
		e.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.file != nil {
		e.file.Close()
		e.file = nil
	}
}

// RunPointer is the file in which a running edgectl run names its
// events file, for edgectl logs in another terminal: in
// $XDG_RUNTIME_DIR, else in the user's cache directory.
func RunPointer() (string, error) {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "edged-run"), nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "edged", "run"), nil
}

// writePointer names path as the events file of this process's run; the
// returned func removes the pointer if it still names this run.
func writePointer(path string) (func(), error) {
	p, err := RunPointer()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, err
	}
	content := fmt.Sprintf("%d\n%s\n", os.Getpid(), path)
	tmp := p + "." + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return nil, err
	}
	return func() {
		if b, err := os.ReadFile(p); err == nil && string(b) == content {
			os.Remove(p)
		}
	}, nil
}

// ErrNoRun says no edgectl run of this user is running.
var ErrNoRun = errors.New("no edgectl run is running")

// RunEvents is the events file of the edgectl run that last started and
// still runs, as its pointer names it; ErrNoRun when there is none.
func RunEvents() (string, error) {
	p, err := RunPointer()
	if err != nil {
		return "", ErrNoRun
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "", ErrNoRun
	}
	pid, path, ok := strings.Cut(strings.TrimSuffix(string(b), "\n"), "\n")
	n, err := strconv.Atoi(pid)
	if !ok || err != nil || n <= 0 || !filepath.IsAbs(path) {
		return "", fmt.Errorf("%s: not an edgectl run pointer; remove it", p)
	}
	// Alive: the process is there. A pid reused since is caught by
	// the file: a temporary run's directory went with it.
	if _, err := os.Stat(filepath.Join("/proc", pid)); err != nil {
		return "", ErrNoRun
	}
	if _, err := os.Stat(path); err != nil {
		return "", ErrNoRun
	}
	return path, nil
}
