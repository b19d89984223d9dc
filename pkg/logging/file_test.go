package logging

import (
	"os"
	"path/filepath"
	"testing"
)

// After a rename (logrotate's), Reopen writes to a new file of the name.
func TestFileReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	f, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Write([]byte("one\n"))
	os.Rename(path, path+".1")
	f.Write([]byte("two\n"))
	if err := f.Reopen(path); err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("three\n"))
	for p, want := range map[string]string{path + ".1": "one\ntwo\n", path: "three\n"} {
		if b, _ := os.ReadFile(p); string(b) != want {
			t.Errorf("%s holds %q, want %q", p, b, want)
		}
	}
	if err := f.Reopen(filepath.Join(dir, "no", "such", "dir.log")); err == nil {
		t.Error("Reopen into a missing directory succeeded")
	}
	f.Write([]byte("four\n"))
	if b, _ := os.ReadFile(path); string(b) != "three\nfour\n" {
		t.Errorf("after a failed Reopen the old file holds %q", b)
	}
}
