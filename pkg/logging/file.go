package logging

import (
	"fmt"
	"os"
	"sync"
)

// File is a log file opened for appending, that Reopen opens again by its
// path: after logrotate has renamed it, the next lines go to a new file of
// that name (logrotate's postrotate runs `systemctl reload edged`).
type File struct {
	mu sync.Mutex
	f  *os.File
}

// OpenFile opens path for appending, making it (mode 0640) if need be.
func OpenFile(path string) (*File, error) {
	l := &File{}
	if err := l.Reopen(path); err != nil {
		return nil, err
	}
	return l, nil
}

// Reopen opens path and writes there from now on; on failure the file
// open until now stays in use.
func (l *File) Reopen(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("log.access_file: %w", err)
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// Write appends p.
func (l *File) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Write(p)
}

// Close closes the file.
func (l *File) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}
