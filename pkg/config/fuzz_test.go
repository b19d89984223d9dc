package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/edged/edged/pkg/config"
)

// FuzzLoad feeds arbitrary bytes to Parse. It must never panic, and every
// error it returns must name the file: the message is all a user sees.
func FuzzLoad(f *testing.F) {
	for _, gc := range readGolden(f) {
		f.Add(gc.input)
	}
	dir := f.TempDir()
	makeTree(f, dir)
	const name = "fuzz.toml"
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := config.Parse(name, dir, data)
		if err == nil {
			if c == nil {
				t.Fatal("Parse returned neither a config nor an error")
			}
			if c.Pool.Threads < 1 || c.Pool.Connections < 1 {
				t.Errorf("loaded a config with %d threads and %d connections a worker", c.Pool.Threads, c.Pool.Connections)
			}
			return
		}
		if c != nil {
			t.Errorf("Parse returned a config along with the error %v", err)
		}
		var es config.Errors
		if !errors.As(err, &es) {
			return
		}
		if len(es) == 0 {
			t.Fatal("Parse returned an empty Errors")
		}
		for _, e := range es {
			if e == nil {
				t.Fatalf("nil *Error in %#v", es)
			}
			if e.File == "" {
				t.Errorf("error without a file: %q", e.Error())
			}
			if e.Line < 0 || e.Line > strings.Count(string(data), "\n")+1 {
				t.Errorf("error on line %d of a %d-line input: %q", e.Line, strings.Count(string(data), "\n")+1, e.Error())
			}
		}
		if msg := err.Error(); !strings.HasPrefix(msg, name) {
			t.Errorf("error does not start with the file name: %q", msg)
		}
	})
}
