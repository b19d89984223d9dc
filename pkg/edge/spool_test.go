package edge

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

func TestSpool(t *testing.T) {
	tests := []struct {
		name     string
		memMax   int
		writes   []string
		inMemory bool
	}{
		{"nothing written", 10, nil, true},
		{"under the threshold", 10, []string{"abc", "def"}, true},
		{"at the threshold", 10, []string{"abcde", "fghij"}, true},
		{"one byte over", 10, []string{"abcde", "fghij", "k"}, false},
		{"one write over", 10, []string{"abcdefghijklmnop"}, false},
		{"spilled, then more", 4, []string{"ab", "cdef", "gh", "", "ijklmnopqrstuvwxyz"}, false},
		{"no memory", 0, []string{"a"}, false},
		{"no memory, empty write", 0, []string{""}, true},
		{"large", 16 << 10, []string{strings.Repeat("x", 16<<10), strings.Repeat("y", 100<<10), "z"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmp := t.TempDir()
			sp := newSpool(tt.memMax, tmp)
			defer sp.Close()
			var want []byte
			for _, w := range tt.writes {
				n, err := sp.Write([]byte(w))
				if err != nil || n != len(w) {
					t.Fatalf("Write(%d bytes): got %d, %v, want %d, nil", len(w), n, err, len(w))
				}
				want = append(want, w...)
				if got := sp.Len(); got != int64(len(want)) {
					t.Errorf("Len after %d bytes: got %d", len(want), got)
				}
			}
			mem, inMem := sp.InMemory()
			if inMem != tt.inMemory {
				t.Errorf("InMemory: got %v, want %v", inMem, tt.inMemory)
			}
			if inMem && !bytes.Equal(mem, want) {
				t.Errorf("InMemory bytes: got %q, want %q", mem, want)
			}
			// WriteTo gives the whole body, every time.
			for i := 0; i < 2; i++ {
				var buf bytes.Buffer
				n, err := sp.WriteTo(&buf)
				if err != nil || n != int64(len(want)) || !bytes.Equal(buf.Bytes(), want) {
					t.Errorf("WriteTo #%d: got %d bytes, %v; want the %d written", i+1, n, err, len(want))
				}
			}
			// Spilled or not, nothing is left in the directory: the file
			// was unlinked as soon as it was made.
			if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
				t.Errorf("temp dir holds %d entries, want none", len(ents))
			}
			if err := sp.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if err := sp.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
		})
	}
}

// A spool whose temporary directory is unusable reports the error from
// the write that would spill.
func TestSpoolTempDirMissing(t *testing.T) {
	sp := newSpool(4, t.TempDir()+"/missing")
	defer sp.Close()
	if _, err := sp.Write([]byte("abc")); err != nil {
		t.Fatalf("Write under the threshold: %v", err)
	}
	if _, err := sp.Write([]byte("defgh")); err == nil {
		t.Errorf("Write over the threshold: got no error, want one")
	}
}

// A spool's memory goes back to a pool on Close; another spool taking it
// must not see, or change, what the first one held.
func TestSpoolReuse(t *testing.T) {
	a := newSpool(1<<10, t.TempDir())
	a.Write([]byte("first body"))
	a.Close()
	b := newSpool(1<<10, t.TempDir())
	defer b.Close()
	if got := b.Len(); got != 0 {
		t.Errorf("Len of a new spool: got %d, want 0", got)
	}
	if mem, _ := b.InMemory(); len(mem) != 0 {
		t.Errorf("a new spool holds %q, want nothing", mem)
	}
	b.Write([]byte("second"))
	var buf bytes.Buffer
	b.WriteTo(&buf)
	if got, want := buf.String(), "second"; got != want {
		t.Errorf("WriteTo: got %q, want %q", got, want)
	}
}
