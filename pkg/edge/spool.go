package edge

import (
	"io"
	"os"
	"sync"
)

// spool holds a body: in memory up to a threshold, then in an unlinked
// temporary file, so a large upload or response costs disk, not memory.
type spool struct {
	mem     []byte
	f       *os.File
	n       int64
	memMax  int
	tempDir string
}

var memPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

func newSpool(memMax int, tempDir string) *spool {
	s := &spool{memMax: memMax, tempDir: tempDir}
	if memMax > 0 {
		s.mem = (*memPool.Get().(*[]byte))[:0]
	}
	return s
}

// Write appends p, spilling to disk once the memory threshold is passed.
func (s *spool) Write(p []byte) (int, error) {
	if s.f == nil && len(s.mem)+len(p) <= s.memMax {
		s.mem = append(s.mem, p...)
		s.n += int64(len(p))
		return len(p), nil
	}
	if s.f == nil {
		f, err := os.CreateTemp(s.tempDir, "edged-body-*")
		if err != nil {
			return 0, err
		}
		// Unlinked at once: the file vanishes with its last descriptor,
		// even if edged is killed.
		os.Remove(f.Name())
		s.f = f
		if _, err := f.Write(s.mem); err != nil {
			return 0, err
		}
		s.release()
	}
	n, err := s.f.Write(p)
	s.n += int64(n)
	return n, err
}

// Len is the number of bytes written.
func (s *spool) Len() int64 { return s.n }

// Spilled says the body outgrew memory and went to a temporary file.
func (s *spool) Spilled() bool { return s.f != nil }

// InMemory returns the whole body when it never spilled.
func (s *spool) InMemory() ([]byte, bool) {
	return s.mem, s.f == nil
}

// WriteTo writes the whole body to w.
func (s *spool) WriteTo(w io.Writer) (int64, error) {
	if s.f == nil {
		n, err := w.Write(s.mem)
		return int64(n), err
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	return io.Copy(w, io.LimitReader(s.f, s.n))
}

func (s *spool) release() {
	if s.mem != nil {
		if cap(s.mem) <= 1<<20 {
			b := s.mem[:0]
			memPool.Put(&b)
		}
		s.mem = nil
	}
}

// Close frees the memory and the file.
func (s *spool) Close() error {
	s.release()
	if s.f != nil {
		err := s.f.Close()
		s.f = nil
		return err
	}
	return nil
}
