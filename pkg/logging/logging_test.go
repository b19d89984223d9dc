package logging

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// logAll logs one message at each level, its text naming its level.
func logAll(l zerolog.Logger) {
	l.Debug().Msg("debug message")
	l.Info().Msg("info message")
	l.Warn().Msg("warn message")
	l.Error().Msg("error message")
}

func TestNewJSON(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, "info", "json")
	log.Info().Str("k", "v").Msg("hello")

	out := buf.String()
	if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Fatalf("output = %q, want exactly one line", out)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(out), &rec); err != nil {
		t.Fatalf("output %q is not JSON: %v", out, err)
	}
	for key, want := range map[string]any{"level": "info", "message": "hello", "k": "v"} {
		if got := rec[key]; got != want {
			t.Errorf("%s = %v, want %v (line %s)", key, got, want, out)
		}
	}
	if _, ok := rec["time"]; !ok {
		t.Errorf("no time field in %s", out)
	}
}

func TestNewLevels(t *testing.T) {
	tests := []struct {
		level string
		want  []string // levels whose message comes out
	}{
		{"debug", []string{"debug", "info", "warn", "error"}},
		{"info", []string{"info", "warn", "error"}},
		{"warn", []string{"warn", "error"}},
		{"error", []string{"error"}},
		{"", []string{"info", "warn", "error"}},
		{"chatty", []string{"info", "warn", "error"}},
		{"verbose", []string{"info", "warn", "error"}},
	}
	for _, tt := range tests {
		t.Run("level="+tt.level, func(t *testing.T) {
			var buf bytes.Buffer
			logAll(New(&buf, tt.level, "json"))
			var got []string
			for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
				if line == "" {
					continue
				}
				var rec struct{ Level, Message string }
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatalf("line %q is not JSON: %v", line, err)
				}
				if rec.Message != rec.Level+" message" {
					t.Errorf("line %q: level %q, message %q", line, rec.Level, rec.Message)
				}
				got = append(got, rec.Level)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("New(level %q) logged %v, want %v", tt.level, got, tt.want)
			}
		})
	}
}

func TestNewFormats(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()

	tests := []struct {
		name     string
		format   string
		w        func(buf *bytes.Buffer) io.Writer
		wantJSON bool
	}{
		{"json", "json", func(b *bytes.Buffer) io.Writer { return b }, true},
		{"console", "console", func(b *bytes.Buffer) io.Writer { return b }, false},
		{"auto, not a file", "auto", func(b *bytes.Buffer) io.Writer { return b }, true},
		{"empty means auto", "", func(b *bytes.Buffer) io.Writer { return b }, true},
		{"auto, a pipe", "auto", nil, true},
		{"console to a pipe", "console", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			var out string
			if tt.w != nil {
				log := New(tt.w(&buf), "info", tt.format)
				log.Info().Msg("hello")
				out = buf.String()
			} else {
				log := New(pw, "info", tt.format)
				log.Info().Msg("hello")
				b := make([]byte, 4096)
				n, err := pr.Read(b)
				if err != nil {
					t.Fatal(err)
				}
				out = string(b[:n])
			}
			if !strings.Contains(out, "hello") {
				t.Errorf("output = %q, want it to contain the message", out)
			}
			isJSON := json.Valid([]byte(strings.TrimSpace(out)))
			if isJSON != tt.wantJSON {
				t.Errorf("format %q: output %q is JSON = %v, want %v", tt.format, out, isJSON, tt.wantJSON)
			}
			if !tt.wantJSON && !strings.Contains(out, "INF") {
				t.Errorf("console output %q, want the level as INF", out)
			}
		})
	}
}

func TestIsTerminal(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	file, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()

	tests := []struct {
		name string
		f    *os.File
		want bool
	}{
		{"pipe read end", pr, false},
		{"pipe write end", pw, false},
		{"regular file", file, false},
		{"/dev/null", null, false},
	}
	// A pseudo-terminal is one, where the system has them.
	if ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0); err == nil {
		defer ptm.Close()
		tests = append(tests, struct {
			name string
			f    *os.File
			want bool
		}{"pseudo-terminal", ptm, true})
	} else {
		t.Logf("no pseudo-terminal to test with: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsTerminal(tt.f); got != tt.want {
				t.Errorf("IsTerminal(%s) = %v, want %v", tt.name, got, tt.want)
			}
		})
	}
}

// A traceback shows as lines on a terminal, not as one quoted line.
func TestConsoleTraceback(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, "info", "console")
	tb := "Traceback (most recent call last):\n  File \"app.py\", line 3, in index\nValueError: boom\n"
	log.Error().Str(TracebackField, tb).Str("path", "/").Msg("app raised")
	out := buf.String()
	if strings.Contains(out, `\n`) {
		t.Errorf("the traceback is escaped onto one line:\n%s", out)
	}
	for _, want := range []string{"app raised", "\n  Traceback (most recent call last):\n    File \"app.py\", line 3, in index\n  ValueError: boom\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("console output lacks %q:\n%s", want, out)
		}
	}
}
