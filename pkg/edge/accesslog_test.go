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

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
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

// The entry leads with what people scan for, says its unit, and names the
// real client behind a trusted proxy, the proxy in its own field.
func TestAccessLogFields(t *testing.T) {
	dir := socketDir(t)
	startWorker(t, dir, "1", replyOK)
	var logs logBuffer
	s := newServerLog(t, dir, zerolog.New(&logs), "proxy.trusted", `["10.0.0.0/8"]`)
	direct := environRequest("GET", "/direct", nil)
	proxied := environRequest("GET", "/proxied", nil)
	proxied.RemoteAddr = "10.0.0.2:5555"
	proxied.Header.Set("X-Forwarded-For", "198.51.100.7")
	for _, r := range []*http.Request{direct, proxied} {
		s.ServeHTTP(httptest.NewRecorder(), r)
	}
	lines := strings.Split(strings.TrimSpace(logs.b.String()), "\n")
	var access []string
	for _, l := range lines {
		if strings.Contains(l, `"log":"access"`) {
			access = append(access, l)
		}
	}
	if len(access) != 2 {
		t.Fatalf("got %d access entries, want 2:\n%s", len(access), logs.b.String())
	}
	for _, l := range access {
		i := strings.Index(l, `"status"`)
		for _, k := range []string{`"method"`, `"path"`, `"duration_ms"`, `"client"`} {
			if j := strings.Index(l, k); j < i {
				t.Errorf("%s comes before status, or is missing: %s", k, l)
			}
			i = strings.Index(l, k)
		}
	}
	entries := logs.access(t)
	if entries[0]["client"] != "203.0.113.5:4000" || entries[0]["proxy"] != nil {
		t.Errorf("direct: client %v proxy %v, want the peer and no proxy", entries[0]["client"], entries[0]["proxy"])
	}
	if entries[1]["client"] != "198.51.100.7" || entries[1]["proxy"] != "10.0.0.2:5555" {
		t.Errorf("behind a trusted proxy: client %v proxy %v, want 198.51.100.7 and 10.0.0.2:5555", entries[1]["client"], entries[1]["proxy"])
	}
	if _, ok := entries[0]["duration_ms"].(float64); !ok {
		t.Errorf("no duration_ms: %v", entries[0])
	}
}
