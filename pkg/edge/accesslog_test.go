package edge

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
)

// logBuffer collects JSON log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// access returns the access log entries written so far.
func (l *logBuffer) access(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["log"] == "access" {
			out = append(out, m)
		}
	}
	return out
}

// Each request's entry names the worker that served it, and none when no
// worker took it, whatever the request before it did.
func TestAccessLogWorker(t *testing.T) {
	dir := socketDir(t)
	fw := startWorker(t, dir, "7", replyOK)
	var logs logBuffer
	s := newServerLog(t, dir, zerolog.New(&logs))

	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, environRequest("GET", "/first?a=1", nil))
	if rec.Code != 200 {
		t.Fatalf("first request: status got %d, want 200", rec.Code)
	}
	// The worker socket gone: the next request is turned away at once.
	fw.stop()
	for i := 0; i < 3; i++ {
		rec = httptest.NewRecorder()
		s.ServeHTTP(rec, environRequest("GET", "/second", nil))
		if rec.Code != http.StatusBadGateway {
			t.Fatalf("second request: status got %d, want 502", rec.Code)
		}
	}

	entries := logs.access(t)
	if len(entries) != 4 {
		t.Fatalf("access log: got %d entries, want 4", len(entries))
	}
	tests := []struct {
		name  string
		entry map[string]any
		want  map[string]any // nil value: must be absent
	}{
		{"served", entries[0], map[string]any{"status": float64(200), "worker": "7", "path": "/first", "query": "a=1", "method": "GET", "bytes": float64(5), "reason": nil}},
		{"turned away", entries[1], map[string]any{"status": float64(502), "worker": nil, "path": "/second", "query": nil}},
		{"turned away again", entries[2], map[string]any{"status": float64(502), "worker": nil}},
		{"and again", entries[3], map[string]any{"status": float64(502), "worker": nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, want := range tt.want {
				got, ok := tt.entry[k]
				switch {
				case want == nil && ok:
					t.Errorf("%s: got %v, want it absent", k, got)
				case want != nil && got != want:
					t.Errorf("%s: got %v, want %v", k, got, want)
				}
			}
		})
	}
}
