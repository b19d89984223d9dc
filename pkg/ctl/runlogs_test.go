package ctl

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// runEvents are an edgectl run's lines: edged's access events, a
// worker's traceback, a stray line, a site's events.
var runEvents = []string{
	`{"level":"info","from":"edgectl run","time":"2026-12-07T09:00:00Z","message":"started"}`,
	`{"level":"info","log":"access","status":200,"method":"GET","path":"/","request_id":"aaa","time":"2026-12-07T09:00:01Z"}`,
	`{"level":"warn","log":"access","status":502,"method":"POST","path":"/pay","site":"shop","request_id":"bbb","time":"2026-12-07T09:00:02Z"}`,
	`{"level":"error","worker":"1","site":"shop","request_id":"bbb","traceback":"Traceback…\nValueError: no","time":"2026-12-07T09:00:02Z","message":"Exception on /pay"}`,
	`not an event: a child's stray output`,
	`{"level":"info","log":"access","status":200,"method":"GET","path":"/blog","site":"blog","request_id":"ccc","time":"2026-12-07T09:10:00Z"}`,
}

func writeRunEvents(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.log")
	// The first two in the file a rotation left, the rest in the
	// current one: read in that order.
	os.WriteFile(path+".1", []byte(strings.Join(runEvents[:2], "\n")+"\n"), 0o600)
	os.WriteFile(path, []byte(strings.Join(runEvents[2:], "\n")+"\n"), 0o600)
	return path
}

func TestRunLogs(t *testing.T) {
	path := writeRunEvents(t)
	for _, tt := range []struct {
		name string
		o    logsOpts
		want []int // indexes into runEvents
	}{
		{"everything", logsOpts{}, []int{0, 1, 2, 3, 4, 5}},
		{"a request, across edged and the worker", logsOpts{request: "bbb"}, []int{2, 3}},
		{"a site", logsOpts{site: "shop"}, []int{2, 3}},
		{"errors: the 502 and the traceback", logsOpts{errors: true}, []int{2, 3}},
		{"a site's errors", logsOpts{site: "blog", errors: true}, nil},
		{"the last two", logsOpts{lines: 2, linesSet: true}, []int{4, 5}},
		{"none", logsOpts{linesSet: true}, nil},
		{"the last of a request", logsOpts{request: "bbb", lines: 1, linesSet: true}, []int{3}},
		{"since a time", logsOpts{since: "2026-12-07T09:05:00Z"}, []int{5}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.output = "json"
			var out bytes.Buffer
			if err := runLogs(context.Background(), path, tt.o, &out); err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, i := range tt.want {
				want = append(want, runEvents[i]+"\n")
			}
			if got := out.String(); got != strings.Join(want, "") {
				t.Errorf("runLogs(%+v) =\n%s\nwant\n%s", tt.o, got, strings.Join(want, ""))
			}
		})
	}
}

func TestRunLogsOutput(t *testing.T) {
	path := writeRunEvents(t)
	var out bytes.Buffer
	if err := runLogs(context.Background(), path, logsOpts{request: "bbb", output: "cat"}, &out); err != nil {
		t.Fatal(err)
	}
	if want := "POST /pay 502\nException on /pay — ValueError: no\n"; out.String() != want {
		t.Errorf("-o cat = %q, want %q", out.String(), want)
	}
	out.Reset()
	if err := runLogs(context.Background(), path, logsOpts{request: "bbb"}, &out); err != nil {
		t.Fatal(err)
	}
	// As a terminal shows them, without colour (not a terminal): the
	// traceback under its event.
	if got := out.String(); !strings.Contains(got, "ERR Exception on /pay") || !strings.Contains(got, "\n  ValueError: no\n") || strings.Contains(got, "\x1b[") {
		t.Errorf("-o short =\n%s", got)
	}
	for _, o := range []logsOpts{{output: "verbose"}, {since: "next tuesday"}} {
		if err := runLogs(context.Background(), path, o, &out); err == nil {
			t.Errorf("runLogs(%+v) took it", o)
		}
	}
}

// syncBuffer is written by the follower while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRunLogsFollow(t *testing.T) {
	path := writeRunEvents(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- runLogs(ctx, path, logsOpts{follow: true, errors: true, output: "cat"}, &out) }()
	waitFor := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !strings.Contains(out.String(), want); {
			if time.Now().After(deadline) {
				t.Fatalf("followed output never showed %q:\n%s", want, out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("POST /pay 502")
	appendLine := func(p, line string) {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(line)
		f.Close()
	}
	// A line written in two parts is shown once, whole.
	appendLine(path, `{"level":"error","message":"first `)
	time.Sleep(300 * time.Millisecond)
	appendLine(path, `half and second"}`+"\n")
	waitFor("first half and second")
	// The run rotates: the old file's last line, then the new file's.
	appendLine(path, `{"level":"error","message":"last of the old file"}`+"\n")
	os.Rename(path, path+".1")
	appendLine(path, `{"level":"error","message":"first of the new file"}`+"\n")
	waitFor("first of the new file")
	// A path missing for a moment (renamed, not yet made again) is not
	// the run's end.
	os.Rename(path, path+".1")
	time.Sleep(400 * time.Millisecond)
	appendLine(path, `{"level":"error","message":"after a gap"}`+"\n")
	waitFor("after a gap")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if strings.Count(got, "first half") != 1 || !strings.Contains(got, "last of the old file\nfirst of the new file\n") {
		t.Errorf("followed:\n%s", got)
	}
	if strings.Contains(got, "GET /") {
		t.Errorf("followed lines not matching --errors:\n%s", got)
	}
}

// Followed from a time, every event since then is shown, not the last
// ten (as journalctl -f --since).
func TestRunLogsFollowSince(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.log")
	var lines []string
	for i := range 15 {
		lines = append(lines, fmt.Sprintf(`{"level":"info","n":%d,"time":"2026-12-07T09:00:%02dZ","message":"event %d"}`, i, i, i))
	}
	os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var out syncBuffer
	if err := runLogs(ctx, path, logsOpts{follow: true, since: "2026-12-07T09:00:01Z", output: "cat"}, &out); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(out.String(), "\n"); got != 14 {
		t.Errorf("-f --since gave %d events, want 14:\n%s", got, out.String())
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 12, 7, 9, 30, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"10 min ago":          now.Add(-10 * time.Minute),
		"30s ago":             now.Add(-30 * time.Second),
		"2 hours ago":         now.Add(-2 * time.Hour),
		"-1h":                 now.Add(-time.Hour),
		"today":               time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC),
		"yesterday":           time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC),
		"09:00":               time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC),
		"2026-12-01 08:15:30": time.Date(2026, 12, 1, 8, 15, 30, 0, time.UTC),
		"2026-12-01":          time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
	} {
		got, err := parseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "soon", "10 fortnights ago", "25:00"} {
		if _, err := parseSince(in, now); err == nil {
			t.Errorf("parseSince(%q) took it", in)
		}
	}
}
