package edge

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edged/edged/pkg/config"
	"github.com/edged/edged/pkg/wire"

	"github.com/rs/zerolog"
)

// timedGET serves GET / and says how long it took.
func timedGET(s *Server) (*httptest.ResponseRecorder, time.Duration) {
	rec := httptest.NewRecorder()
	start := time.Now()
	s.ServeHTTP(rec, environRequest("GET", "/", nil))
	return rec, time.Since(start)
}

// answer returns a serveFunc that sends the same response every time.
func answer(status string, fields []string, chunks ...[]byte) serveFunc {
	return func(c *fconn, _ *wreq) {
		c.respond(status, fields, chunks...)
	}
}

// raw returns a serveFunc that writes b, then closes the connection.
func raw(b ...[]byte) serveFunc {
	return func(c *fconn, _ *wreq) {
		c.Write(bytes.Join(b, nil))
	}
}

// fetch sends one request to the server at base with a client of its own.
func fetch(t *testing.T, base, method, path string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return resp, b
}

// httpServer serves s over a real connection (httptest), so that what
// net/http adds or withholds on the wire shows.
func httpServer(t *testing.T, s *Server) string {
	t.Helper()
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return hs.URL
}

func TestResponse(t *testing.T) {
	html := []byte("<!DOCTYPE html><html><body>hi</body></html>")
	tests := []struct {
		name       string
		serve      serveFunc
		method     string
		wantStatus int
		wantHeader map[string][]string // nil value: must be absent
		wantBody   string
	}{
		{
			name:       "plain 200",
			serve:      answer("200 OK", []string{"Content-Type", "text/plain"}, []byte("hello")),
			wantStatus: 200,
			wantHeader: map[string][]string{"Content-Type": {"text/plain"}, "Content-Length": {"5"}},
			wantBody:   "hello",
		},
		{
			name:       "status and headers kept",
			serve:      answer("201 Created", []string{"Location", "/x/1", "X-Request-Id", "abc", "Cache-Control", "no-store"}, []byte("{}")),
			wantStatus: 201,
			wantHeader: map[string][]string{"Location": {"/x/1"}, "X-Request-Id": {"abc"}, "Cache-Control": {"no-store"}},
			wantBody:   "{}",
		},
		{
			name: "hop-by-hop headers from the app stripped",
			serve: answer("200 OK", []string{
				"Connection", "close", "Keep-Alive", "timeout=5", "Transfer-Encoding", "chunked",
				"Upgrade", "h2c", "Trailer", "X-Sum", "Proxy-Authenticate", "Basic", "Te", "trailers",
				"X-Kept", "yes",
			}, []byte("body")),
			wantStatus: 200,
			wantHeader: map[string][]string{
				"Connection": nil, "Keep-Alive": nil, "Transfer-Encoding": nil, "Upgrade": nil,
				"Trailer": nil, "Proxy-Authenticate": nil, "Te": nil,
				"X-Kept": {"yes"}, "Content-Length": {"4"},
			},
			wantBody: "body",
		},
		{
			name:       "Content-Length is the body's",
			serve:      answer("200 OK", []string{"Content-Length", "999"}, []byte("hello")),
			wantStatus: 200,
			wantHeader: map[string][]string{"Content-Length": {"5"}},
			wantBody:   "hello",
		},
		{
			name:       "Content-Length added over several chunks",
			serve:      answer("200 OK", nil, []byte("ab"), []byte("cd"), []byte("ef")),
			wantStatus: 200,
			wantHeader: map[string][]string{"Content-Length": {"6"}},
			wantBody:   "abcdef",
		},
		{
			name:       "empty body",
			serve:      answer("200 OK", []string{"Content-Type", "text/plain"}),
			wantStatus: 200,
			wantHeader: map[string][]string{"Content-Length": {"0"}},
		},
		{
			name:       "HEAD keeps the app's Content-Length",
			serve:      answer("200 OK", []string{"Content-Type", "text/plain", "Content-Length", "1234"}),
			method:     "HEAD",
			wantStatus: 200,
			wantHeader: map[string][]string{"Content-Length": {"1234"}},
		},
		{
			name:       "HEAD answered with a body sends none",
			serve:      answer("200 OK", []string{"Content-Type", "text/plain"}, []byte("hello")),
			method:     "HEAD",
			wantStatus: 200,
			wantHeader: map[string][]string{"Content-Length": {"5"}},
		},
		{
			name:       "204 has no body",
			serve:      answer("204 No Content", []string{"Content-Length", "4"}, []byte("junk")),
			wantStatus: 204,
			wantHeader: map[string][]string{"Content-Length": nil, "Content-Type": nil},
		},
		{
			name:       "304 has no body",
			serve:      answer("304 Not Modified", []string{"Etag", `"v1"`, "Content-Length", "4"}, []byte("junk")),
			wantStatus: 304,
			wantHeader: map[string][]string{"Content-Length": nil, "Etag": {`"v1"`}},
		},
		{
			name:       "no Content-Type sniffed",
			serve:      answer("200 OK", nil, html),
			wantStatus: 200,
			wantHeader: map[string][]string{"Content-Type": nil},
			wantBody:   string(html),
		},
		{
			name:       "every Set-Cookie kept",
			serve:      answer("200 OK", []string{"Set-Cookie", "a=1; Path=/", "set-cookie", "b=2; HttpOnly", "Set-Cookie", "c=3"}, []byte("x")),
			wantStatus: 200,
			wantHeader: map[string][]string{"Set-Cookie": {"a=1; Path=/", "b=2; HttpOnly", "c=3"}},
			wantBody:   "x",
		},
		{
			name:       "500 from the app passed on",
			serve:      answer("500 Internal Server Error", []string{"Content-Type", "text/html"}, []byte("oops")),
			wantStatus: 500,
			wantHeader: map[string][]string{"Content-Type": {"text/html"}},
			wantBody:   "oops",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := socketDir(t)
			startWorker(t, dir, "1", tt.serve)
			base := httpServer(t, newServer(t, dir))
			method := tt.method
			if method == "" {
				method = "GET"
			}
			resp, body := fetch(t, base, method, "/", nil)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status: got %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			for name, want := range tt.wantHeader {
				got, ok := resp.Header[name]
				switch {
				case want == nil && ok:
					t.Errorf("%s: got %q, want it absent", name, got)
				case want != nil && !slices.Equal(got, want):
					t.Errorf("%s: got %q, want %q", name, got, want)
				}
			}
			if string(body) != tt.wantBody {
				t.Errorf("body: got %q, want %q", body, tt.wantBody)
			}
		})
	}
}

// The header map the edge hands net/http holds canonical names only, with
// repeated fields gathered under one.
func TestResponseHeaderNames(t *testing.T) {
	dir := socketDir(t)
	startWorker(t, dir, "1", answer("200 OK", []string{
		"x-custom-thing", "1", "X-CUSTOM-THING", "2", "content-type", "text/plain", "www-authenticate", "Basic", "connection", "close",
	}, []byte("ok")))
	s := newServer(t, dir)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, environRequest("GET", "/", nil))
	if rec.Code != 200 {
		t.Fatalf("status: got %d, want 200", rec.Code)
	}
	want := map[string][]string{
		"X-Custom-Thing":   {"1", "2"},
		"Content-Type":     {"text/plain"},
		"Www-Authenticate": {"Basic"},
		"Content-Length":   {"2"},
	}
	got := rec.Header()
	for name, vs := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected header %q: %q", name, vs)
		}
	}
	for name, vs := range want {
		if !slices.Equal(got[name], vs) {
			t.Errorf("%s: got %q, want %q", name, got[name], vs)
		}
	}
}

func TestUpstreamFailure(t *testing.T) {
	tests := []struct {
		name   string
		config []string
		serve  serveFunc
		want   int
		tries  int // times the request went to a worker; 0 means 1
	}{
		{"abort instead of a head", nil, raw(abortFrame), 500, 0},
		{"abort after a head and a chunk", nil, raw(headFrame("200 OK", "Content-Type", "text/plain"), chunkFrame([]byte("part")), abortFrame), 500, 0},
		{"garbage status", nil, raw(headFrame("OK fine"), endFrame), 502, 0},
		{"status out of range", nil, raw(headFrame("099 Low"), endFrame), 502, 0},
		{"HTTP instead of frames", nil, raw([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")), 502, 0},
		{"header value with CR LF", nil, raw(headFrame("200 OK", "X-Bad", "a\r\nSet-Cookie: admin=1"), endFrame), 502, 0},
		{"bad header name", nil, raw(headFrame("200 OK", "Bad Name", "x"), endFrame), 502, 0},
		// A GET may go again after a hang-up before any answer: it
		// went to a worker three times in all.
		{"closed before answering", nil, raw(), 502, 3},
		{"closed within the head", nil, raw(wire.AppendHeader(nil, wire.TypeHead, 0, 50), []byte("200 OK")), 502, 0},
		{"closed within the body", nil, raw(headFrame("200 OK"), wire.AppendHeader(nil, wire.TypeBody, 0, 100), []byte("short")), 502, 0},
		{"closed before the end frame", nil, raw(headFrame("200 OK"), chunkFrame([]byte("all"))), 502, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := socketDir(t)
			fw := startWorker(t, dir, "1", tt.serve)
			s := newServer(t, dir, tt.config...)
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, environRequest("GET", "/", nil))
			if rec.Code != tt.want {
				t.Errorf("status: got %d, want %d", rec.Code, tt.want)
			}
			if got, want := rec.Header().Get("Content-Type"), "text/plain; charset=utf-8"; got != want {
				t.Errorf("Content-Type: got %q, want %q (edged's own error page)", got, want)
			}
			if got, want := rec.Body.String(), http.StatusText(tt.want)+"\n"; got != want {
				t.Errorf("body: got %q, want %q", got, want)
			}
			want := max(tt.tries, 1)
			if n := len(fw.requests()); n != want {
				t.Errorf("the worker got %d requests, want %d (a failure after an answer began is never retried)", n, want)
			}
		})
	}
}

func TestUpstreamTimeout(t *testing.T) {
	tests := []struct {
		name  string
		serve serveFunc
	}{
		{"silent", func(c *fconn, _ *wreq) { <-c.done }},
		{"head, then silent", func(c *fconn, _ *wreq) {
			c.Write(append(headFrame("200 OK"), chunkFrame([]byte("some"))...))
			<-c.done
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := socketDir(t)
			startWorker(t, dir, "1", tt.serve)
			var logs logBuffer
			s := newServerLog(t, dir, zerolog.New(&logs), "app.timeout", `"300ms"`)
			rec, took := timedGET(s)
			if rec.Code != http.StatusGatewayTimeout {
				t.Errorf("status: got %d, want 504", rec.Code)
			}
			if e := logs.access(t); len(e) != 1 || e[0]["reason"] != "app.timeout (300ms) passed" || e[0]["error"] != nil {
				t.Errorf("access log: %v, want the reason app.timeout (300ms) passed, and no error", e)
			}
			if took < 250*time.Millisecond || took > 3*time.Second {
				t.Errorf("took %v, want about app.timeout (300ms)", took)
			}
		})
	}
}

// With no socket to connect to, a request fails at once.
func TestNoWorkerSocket(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
	}{
		{"no socket at all", func(t *testing.T, dir string) {}},
		{"socket file left, nobody listening", func(t *testing.T, dir string) {
			q := listenQueue(t, dir, 4)
			q.ln.SetUnlinkOnClose(false)
			q.ln.Close()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := socketDir(t)
			tt.setup(t, dir)
			s := newServer(t, dir, "limits.queue_timeout", `"10s"`)
			for i := 0; i < 3; i++ {
				rec, took := timedGET(s)
				if rec.Code != http.StatusBadGateway {
					t.Errorf("request %d: status got %d, want 502", i+1, rec.Code)
				}
				if took > 2*time.Second {
					t.Errorf("request %d took %v, want well under limits.queue_timeout (10s)", i+1, took)
				}
			}
		})
	}
}

// A socket no worker takes from (every worker still importing its app)
// holds a request for limits.queue_timeout, then 503. The frame says
// when it stops being worth running, so a worker that takes it late
// leaves it.
func TestNoWorkerTakes(t *testing.T) {
	dir := socketDir(t)
	q := listenQueue(t, dir, 4)
	s := newServer(t, dir, "limits.queue_timeout", `"300ms"`)
	start := time.Now()
	rec, took := timedGET(s)
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("status: got %d, want 503", rec.Code)
	}
	if got := rec.Header().Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After: got %q, want \"1\"", got)
	}
	if took < 250*time.Millisecond || took > 3*time.Second {
		t.Errorf("took %v, want about limits.queue_timeout (300ms)", took)
	}
	// A worker that comes up now finds the request, past its deadline.
	c, err := q.ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req, err := readRequest(bufio.NewReader(c))
	if err != nil {
		t.Fatalf("the queued request: %v", err)
	}
	if req.deadline.IsZero() || !req.deadline.Before(time.Now()) || req.deadline.Before(start) {
		t.Errorf("deadline in the frame: %v, want between the start (%v) and now", req.deadline, start)
	}
}

// A worker that took the request after its deadline answers that it did
// not run it: 503, as for a queue timeout.
func TestExpired(t *testing.T) {
	dir := socketDir(t)
	startWorker(t, dir, "1", raw(expiredFrame))
	s := newServer(t, dir)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, environRequest("GET", "/", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("status: got %d, want 503", rec.Code)
	}
}

// A request never waits behind a busy worker while another is free: with
// one worker stuck, every request goes to the others.
func TestFreeWorkerTakesNext(t *testing.T) {
	dir := socketDir(t)
	release := make(chan struct{})
	stuck := make(chan struct{}, 1)
	startWorker(t, dir, "1", func(c *fconn, req *wreq) {
		if req.env["PATH_INFO"] == "/stuck" {
			stuck <- struct{}{}
			select {
			case <-release:
			case <-c.done:
			}
		}
		c.respond("200 OK", nil, []byte(c.worker))
	})
	s := newServer(t, dir)
	go func() {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, environRequest("GET", "/stuck", nil))
	}()
	wait(t, stuck, "the stuck request to reach worker 1")
	startWorker(t, dir, "2", replyOK)
	startWorker(t, dir, "3", replyOK)
	start := time.Now()
	for i := 0; i < 20; i++ {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, environRequest("GET", "/quick", nil))
		if rec.Code != 200 {
			t.Fatalf("request %d: status %d, want 200", i+1, rec.Code)
		}
	}
	close(release)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("20 quick requests took %v with two free workers, want well under a second each", took)
	}
}

func TestQueue(t *testing.T) {
	tests := []struct {
		name string
		// queue is limits.queue_length: how many requests the socket
		// holds while every worker is busy.
		queue    int
		fill     int // connections already waiting
		config   []string
		minWait  time.Duration
		maxWait  time.Duration
		wantBody string
	}{
		{"queue full", 1, 1, nil, 0, time.Second, "Service Unavailable\n"},
		{"queue full, longer", 3, 3, nil, 0, time.Second, "Service Unavailable\n"},
		{"queue timeout", 4, 0, []string{"limits.queue_timeout", `"300ms"`}, 250 * time.Millisecond, 3 * time.Second, "Service Unavailable\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := socketDir(t)
			got := make(chan struct{}, 1)
			release := make(chan struct{})
			cfg := testConfig(t, dir, append(tt.config, "limits.queue_length", strconv.Itoa(tt.queue))...)
			listenQueue(t, dir, cfg.Limits.Backlog())
			startWorker(t, dir, "1", func(c *fconn, req *wreq) {
				got <- struct{}{}
				select {
				case <-release:
				case <-c.done:
					return
				}
				c.respond("200 OK", nil, []byte("slow"))
			})
			s := newServer(t, dir, append(tt.config, "limits.queue_length", strconv.Itoa(tt.queue))...)
			first := make(chan int, 1)
			go func() {
				rec := httptest.NewRecorder()
				s.ServeHTTP(rec, environRequest("GET", "/slow", nil))
				first <- rec.Code
			}()
			wait(t, got, "the first request to reach the worker")
			// Connections waiting behind it, as other requests would.
			for i := 0; i < tt.fill; i++ {
				c, err := net.Dial("unix", filepath.Join(dir, config.QueueSocket))
				if err != nil {
					t.Fatalf("filling the queue: %v", err)
				}
				defer c.Close()
			}

			rec, took := timedGET(s)
			close(release)
			if rec.Code != http.StatusServiceUnavailable {
				t.Errorf("status: got %d, want 503", rec.Code)
			}
			if got, want := rec.Header().Get("Retry-After"), "1"; got != want {
				t.Errorf("Retry-After: got %q, want %q", got, want)
			}
			if rec.Body.String() != tt.wantBody {
				t.Errorf("body: got %q, want %q", rec.Body.String(), tt.wantBody)
			}
			if took < tt.minWait || took > tt.maxWait {
				t.Errorf("took %v, want between %v and %v", took, tt.minWait, tt.maxWait)
			}
			if code := wait(t, first, "the first request"); code != 200 {
				t.Errorf("first request: status got %d, want 200", code)
			}
		})
	}
}

// randomBytes returns n bytes no compression or alignment bug could
// reproduce by chance.
func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// hideLength hides a reader's type, so that net/http sends it chunked.
type hideLength struct{ io.Reader }

func TestRequestBody(t *testing.T) {
	tests := []struct {
		name    string
		memory  string
		size    int
		chunked bool
	}{
		{"small, in memory", "16k", 1000, false},
		{"at the memory threshold", "16k", 16 << 10, false},
		{"in memory, sent after the frame", "1m", 200 << 10, false},
		{"spilled to disk", "16k", 5 << 20, false},
		{"spilled to disk, chunked", "16k", 3<<20 + 7, true},
		{"no memory at all", "0", 100 << 10, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := socketDir(t)
			tmp := t.TempDir()
			leftovers := make(chan []string, 1)
			fw := startWorker(t, dir, "1", func(c *fconn, req *wreq) {
				// The spool is open now: its file must already be unlinked.
				ents, _ := os.ReadDir(tmp)
				var names []string
				for _, e := range ents {
					names = append(names, e.Name())
				}
				leftovers <- names
				c.respond("200 OK", nil, []byte(strconv.Itoa(len(req.body))))
			})
			s := newServer(t, dir,
				"buffers.request_memory", strconv.Quote(tt.memory),
				"buffers.temp_dir", strconv.Quote(tmp),
				"limits.max_body", `"16m"`)
			base := httpServer(t, s)
			payload := randomBytes(t, tt.size)
			var body io.Reader = bytes.NewReader(payload)
			if tt.chunked {
				body = hideLength{body}
			}
			resp, got := fetch(t, base, "POST", "/upload", body)
			if resp.StatusCode != 200 {
				t.Fatalf("status: got %d, want 200 (%q)", resp.StatusCode, got)
			}
			req := fw.only(t)
			if !bytes.Equal(req.body, payload) {
				t.Errorf("body: the worker got %d bytes, not the %d sent (or different ones)", len(req.body), len(payload))
			}
			if got, want := req.env["CONTENT_LENGTH"], strconv.Itoa(tt.size); got != want {
				t.Errorf("CONTENT_LENGTH: got %q, want %q", got, want)
			}
			if names := <-leftovers; len(names) != 0 {
				t.Errorf("temp dir during the request: got %q, want nothing (the spool file unlinked)", names)
			}
			if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
				t.Errorf("temp dir after the request: got %d entries, want none", len(ents))
			}
		})
	}
}

func TestResponseBody(t *testing.T) {
	tests := []struct {
		name   string
		memory string
		max    string // buffers.response_max; "" the default
		size   int
		chunk  int
	}{
		{"in memory", "1m", "", 100 << 10, 8 << 10},
		{"spilled to disk", "64k", "", 3 << 20, 100000},
		{"spilled in one big chunk", "64k", "", 2 << 20, 2 << 20},
		{"no memory at all", "0", "", 300 << 10, 4096},
		// Past response_max the rest goes as it comes, chunked.
		{"over response_max", "64k", "1m", 3 << 20, 100000},
		{"over response_max in one chunk", "64k", "1m", 2 << 20, 2 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := socketDir(t)
			tmp := t.TempDir()
			payload := randomBytes(t, tt.size)
			var chunks [][]byte
			for b := payload; len(b) > 0; b = b[min(len(b), tt.chunk):] {
				chunks = append(chunks, b[:min(len(b), tt.chunk)])
			}
			startWorker(t, dir, "1", answer("200 OK", []string{"Content-Type", "application/octet-stream"}, chunks...))
			kv := []string{"buffers.response_memory", strconv.Quote(tt.memory), "buffers.temp_dir", strconv.Quote(tmp)}
			wantLength := strconv.Itoa(tt.size)
			if tt.max != "" {
				kv = append(kv, "buffers.response_max", strconv.Quote(tt.max))
				wantLength = ""
			}
			s := newServer(t, dir, kv...)
			base := httpServer(t, s)
			resp, got := fetch(t, base, "GET", "/download", nil)
			if resp.StatusCode != 200 {
				t.Fatalf("status: got %d, want 200", resp.StatusCode)
			}
			if !bytes.Equal(got, payload) {
				t.Errorf("body: got %d bytes, want the %d the app sent (or different ones)", len(got), len(payload))
			}
			if got := resp.Header.Get("Content-Length"); got != wantLength {
				t.Errorf("Content-Length: got %q, want %q", got, wantLength)
			}
			if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
				t.Errorf("temp dir after the response: got %d entries, want none", len(ents))
			}
		})
	}
}

func TestMaxBody(t *testing.T) {
	tests := []struct {
		name    string
		size    int
		chunked bool
		want    int
	}{
		{"Content-Length over", 2048, false, 413},
		{"chunked over", 2048, true, 413},
		{"Content-Length at the limit", 1024, false, 200},
		{"chunked at the limit", 1024, true, 200},
		{"Content-Length one over", 1025, false, 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := socketDir(t)
			fw := startWorker(t, dir, "1", replyOK)
			base := httpServer(t, newServer(t, dir, "limits.max_body", `"1k"`))
			var body io.Reader = bytes.NewReader(randomBytes(t, tt.size))
			if tt.chunked {
				body = hideLength{body}
			}
			resp, _ := fetch(t, base, "POST", "/", body)
			if resp.StatusCode != tt.want {
				t.Fatalf("status: got %d, want %d", resp.StatusCode, tt.want)
			}
			wantReqs := 0
			if tt.want == 200 {
				wantReqs = 1
			} else if !resp.Close {
				t.Errorf("a 413 keeps the connection open, want Connection: close")
			}
			if n := len(fw.requests()); n != wantReqs {
				t.Errorf("the worker got %d requests, want %d", n, wantReqs)
			}
		})
	}
}

// A worker that reads a request and hangs up without a word (its process
// died) may have run it: only a request that is safe to repeat goes
// again, on a new connection.
func TestWorkerHangsUp(t *testing.T) {
	tests := []struct {
		method   string
		want     int
		wantReqs int
	}{
		{"GET", 200, 2},
		{"HEAD", 200, 2},
		{"PUT", 200, 2},
		{"POST", 502, 1},
		{"PATCH", 502, 1},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			dir := socketDir(t)
			fw := startWorker(t, dir, "1", func(c *fconn, req *wreq) {
				if req.conn == 1 {
					return // gone without a word
				}
				c.respond("200 OK", nil, []byte("fresh"))
			})
			s := newServer(t, dir)
			var body io.Reader
			payload := []byte("payload")
			if tt.method != "GET" && tt.method != "HEAD" {
				body = bytes.NewReader(payload)
			}
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, environRequest(tt.method, "/", body))
			if rec.Code != tt.want {
				t.Errorf("status got %d, want %d", rec.Code, tt.want)
			}
			rs := fw.requests()
			if len(rs) != tt.wantReqs {
				t.Errorf("the worker got %d requests, want %d", len(rs), tt.wantReqs)
			}
			for _, r := range rs {
				if r.env["REQUEST_METHOD"] != tt.method {
					t.Errorf("REQUEST_METHOD: got %q, want %q", r.env["REQUEST_METHOD"], tt.method)
				}
				if body != nil && !bytes.Equal(r.body, payload) {
					t.Errorf("body: got %d bytes, want the %d sent", len(r.body), len(payload))
				}
			}
		})
	}
}

// TestStalledBodyNotRetried is a regression test: a worker that stops
// reading a large body part way (an app reading it slowly, or stuck) makes
// the write time out. The app may be running, so the request must not go
// again, not even on a kept-alive connection: one 504, one frame seen.
func TestStalledBodyNotRetried(t *testing.T) {
	dir := socketDir(t)
	q := listenQueue(t, dir, 8)
	done := make(chan struct{})
	var frames atomic.Int32
	go func() {
		for {
			c, err := q.ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				r := bufio.NewReader(c)
				hdr := make([]byte, wire.HeaderLen)
				if _, err := io.ReadFull(r, hdr); err != nil {
					return
				}
				payload := make([]byte, binary.LittleEndian.Uint32(hdr[4:]))
				if _, err := io.ReadFull(r, payload); err != nil {
					return
				}
				bodyLen := binary.LittleEndian.Uint64(payload[8:])
				frames.Add(1)
				if bodyLen > 1<<20 {
					<-done // read no more: the edge's write stalls
					return
				}
				if bodyLen > 0 {
					io.CopyN(io.Discard, r, wire.HeaderLen+int64(bodyLen))
				}
				c.Write(append(append(headFrame("200 OK"), chunkFrame([]byte("ok"))...), endFrame...))
			}(c)
		}
	}()
	t.Cleanup(func() { close(done) })

	s := newServer(t, dir, "limits.max_body", `"64m"`, "app.timeout", `"500ms"`, "limits.queue_timeout", `"300ms"`)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, environRequest("GET", "/", nil))
	if rec.Code != 200 {
		t.Fatalf("first request: status %d, want 200", rec.Code)
	}
	rec = httptest.NewRecorder()
	s.ServeHTTP(rec, environRequest("PUT", "/", bytes.NewReader(make([]byte, 32<<20))))
	if rec.Code != http.StatusGatewayTimeout {
		t.Errorf("stalled body: status %d, want 504", rec.Code)
	}
	if got := frames.Load(); got != 2 {
		t.Errorf("the worker saw %d request frames, want 2 (the PUT once)", got)
	}
}
