package worker

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// events runs appOutput over the writes and returns the events logged.
// pause, between two writes, lets the output go quiet.
func events(t *testing.T, writes ...string) []map[string]any {
	t.Helper()
	r, w := io.Pipe()
	var buf bytes.Buffer
	done := make(chan struct{})
	go func() {
		appOutput(r, "stderr", zerolog.New(&buf))
		close(done)
	}()
	for _, s := range writes {
		if s == pause {
			time.Sleep(3 * outputQuiet)
			continue
		}
		io.WriteString(w, s)
	}
	w.Close()
	<-done
	var evs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		evs = append(evs, ev)
	}
	return evs
}

const pause = "\x00pause"

func TestAppOutput(t *testing.T) {
	flaskError := "[2026-12-02 10:00:00,000] ERROR in app: Exception on /boom [GET]\n" +
		"Traceback (most recent call last):\n" +
		"  File \"/srv/shop/app.py\", line 10, in boom\n" +
		"    raise ValueError(\"boom\")\n" +
		"ValueError: boom\n"
	chained := "Traceback (most recent call last):\n  File \"a.py\", line 1, in f\nKeyError: 'x'\n\n" +
		"During handling of the above exception, another exception occurred:\n\n" +
		"Traceback (most recent call last):\n  File \"a.py\", line 3, in f\nRuntimeError: wrapped\n"
	tests := []struct {
		name   string
		writes []string
		want   []string // message, then level, per event
		tbs    []int    // lines of each event's traceback
	}{
		{"plain lines", []string{"one\ntwo\n"}, []string{"one", "info", "two", "info"}, []int{0, 0}},
		{"logging's error and its traceback", []string{"before\n" + flaskError + "after\n"},
			[]string{"before", "info", "[2026-12-02 10:00:00,000] ERROR in app: Exception on /boom [GET]", "error", "after", "info"}, []int{0, 4, 0}},
		{"a traceback alone", []string{chained}, []string{"RuntimeError: wrapped", "error"}, []int{9}},
		{"a traceback written in pieces", []string{flaskError[:100], flaskError[100:]},
			[]string{"[2026-12-02 10:00:00,000] ERROR in app: Exception on /boom [GET]", "error"}, []int{4}},
		{"a warning", []string{"WARNING: deprecated\n"}, []string{"WARNING: deprecated", "warn"}, []int{0}},
		{"a last line without newline", []string{"no newline"}, []string{"no newline", "info"}, []int{0}},
		{"quiet between lines", []string{"first\n", pause, "second\n"}, []string{"first", "info", "second", "info"}, []int{0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs := events(t, tt.writes...)
			if len(evs) != len(tt.tbs) {
				t.Fatalf("got %d events, want %d: %v", len(evs), len(tt.tbs), evs)
			}
			for i, ev := range evs {
				if ev["message"] != tt.want[2*i] || ev["level"] != tt.want[2*i+1] {
					t.Errorf("event %d: %v %q, want %v %q", i, ev["level"], ev["message"], tt.want[2*i+1], tt.want[2*i])
				}
				tb, _ := ev["traceback"].(string)
				if n := strings.Count(tb, "\n"); n != tt.tbs[i] {
					t.Errorf("event %d: traceback of %d lines, want %d: %q", i, n, tt.tbs[i], tb)
				}
				if ev["stream"] != "stderr" {
					t.Errorf("event %d: stream %v", i, ev["stream"])
				}
			}
		})
	}
}

func TestAppOutputLongLine(t *testing.T) {
	evs := events(t, strings.Repeat("x", 3*maxOutputLine)+"\nnext\n")
	if len(evs) != 2 {
		t.Fatalf("got %d events, want 2", len(evs))
	}
	if n := len(evs[0]["message"].(string)); n != maxOutputLine {
		t.Errorf("a long line kept %d bytes, want %d", n, maxOutputLine)
	}
}

// Lines the app wrote for a request (wsgi.errors, where Flask's logger
// writes) carry its id; the mark never reaches the message.
func TestAppOutputRequestID(t *testing.T) {
	mark := func(id string) string { return ridMark + id + ridEnd }
	flaskError := mark("r1") + "[2026-12-02 10:00:00,000] ERROR in app: Exception on /boom [GET]\n" +
		mark("r1") + "Traceback (most recent call last):\n" +
		mark("r1") + "  File \"/srv/shop/app.py\", line 10, in boom\n" +
		mark("r1") + "ValueError: boom\n"
	evs := events(t, mark("r0")+"hello from r0\n", "no request\n", flaskError, mark("broken")+"x\n"[:0]+"\x1erid:unterminated\n")
	want := []struct{ msg, id string }{
		{"hello from r0", "r0"},
		{"no request", ""},
		{"[2026-12-02 10:00:00,000] ERROR in app: Exception on /boom [GET]", "r1"},
		{"\x1erid:unterminated", "broken"},
	}
	if len(evs) != len(want) {
		t.Fatalf("events %v", evs)
	}
	for i, w := range want {
		id, _ := evs[i]["request_id"].(string)
		if evs[i]["message"] != w.msg || id != w.id {
			t.Errorf("event %d: %q request_id %q, want %q %q", i, evs[i]["message"], id, w.msg, w.id)
		}
	}
	if tb, _ := evs[2]["traceback"].(string); strings.Contains(tb, "\x1e") || !strings.Contains(tb, "ValueError: boom") {
		t.Errorf("traceback %q", tb)
	}
}
