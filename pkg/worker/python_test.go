package worker

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/edged/edged/pkg/config"
	"github.com/edged/edged/pkg/sd"
	"github.com/edged/edged/pkg/upstream"
	"github.com/edged/edged/pkg/wire"
	"github.com/edged/edged/pkg/worker/python"
	"github.com/rs/zerolog"
)

// These tests run the real Python side: workerd's Run starts the
// interpreter named by EDGED_PYTHON with the embedded edged_worker package, and
// the tests talk to it over the Unix socket as edge does.

// pyWorker is one workerd, its Python child serving testdata/testapp.py.
type pyWorker struct {
	w    *Worker
	sock string
	dir  string     // the app's directory, where it may leave files
	done chan error // Run's result

	cfg *config.Config
	ln  *os.File
	log zerolog.Logger // workerd's: to the test's log unless set before run
	// stop ends Run as a stop of the service does.
	stop context.CancelFunc
}

// interpreter is the Python to test with; without one it skips the test.
func interpreter(tb testing.TB) string {
	tb.Helper()
	p := os.Getenv("EDGED_PYTHON")
	if p == "" {
		p = "/usr/bin/python3"
	}
	if _, err := exec.LookPath(p); err != nil {
		tb.Skipf("!!! SKIPPING the Python worker tests: no interpreter at %s (%v). Install python3 or set EDGED_PYTHON to one. !!!", p, err)
	}
	return p
}

// runWorker starts workerd on a fresh socket, as Main does but with a
// config built here, and stops it when the test ends. The app directory
// holds testdata/testapp.py and files; level filters workerd's log.
func runWorker(tb testing.TB, module, class string, level zerolog.Level, files map[string]string) *pyWorker {
	tb.Helper()
	p := listenWorker(tb, module, class, level, files)
	p.run(tb)
	return p
}

// listenWorker readies what runWorker runs, up to listening on the socket:
// connections made before run wait in its queue.
func listenWorker(tb testing.TB, module, class string, level zerolog.Level, files map[string]string) *pyWorker {
	tb.Helper()
	py := interpreter(tb)
	dir := tb.TempDir()
	app, err := os.ReadFile(filepath.Join("testdata", "testapp.py"))
	if err != nil {
		tb.Fatal(err)
	}
	files = mergeFiles(map[string]string{"testapp.py": string(app)}, files)
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	toml := fmt.Sprintf(`
[app]
module = %q
directory = %q
python = %q

[pool]
class = %q
threads = 4
socket_dir = %q
graceful_timeout = "5s"
`, module, dir, py, class, dir)
	cfg, err := config.Parse("test.toml", dir, []byte(toml))
	if err != nil {
		tb.Fatalf("config:\n%s\n%v", toml, err)
	}

	sock := filepath.Join(dir, config.QueueSocket)
	ln, err := sd.ListenUnix(sock, 64)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	log := zerolog.New(zerolog.NewTestWriter(tb)).Level(level).With().Str("test", tb.Name()).Logger()
	return &pyWorker{sock: sock, dir: dir, done: make(chan error, 1), cfg: cfg, ln: ln, log: log}
}

// run starts workerd on p's socket and stops it when the test ends.
func (p *pyWorker) run(tb testing.TB) {
	tb.Helper()
	p.w = New(p.cfg, "1", p.log)
	ctx, cancel := context.WithCancel(context.Background())
	p.stop = cancel
	go func() { p.done <- p.w.Run(ctx, p.ln) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-p.done:
			if err != nil {
				var ie *ImportError
				if !errors.As(err, &ie) {
					tb.Errorf("Run returned %v after cancel, want nil", err)
				}
			}
			p.done <- err // for a test that looks after cleanup
		case <-time.After(15 * time.Second):
			tb.Errorf("Run did not return within 15s of its context ending")
		}
	})
}

// startWorker runs workerd and waits until the app has loaded.
func startWorker(tb testing.TB, module, class string, level zerolog.Level, files map[string]string) *pyWorker {
	tb.Helper()
	p := runWorker(tb, module, class, level, files)
	p.waitReady(tb)
	return p
}

func (p *pyWorker) waitReady(tb testing.TB) {
	tb.Helper()
	select {
	case <-p.w.Ready:
	case err := <-p.done:
		tb.Fatalf("Run returned %v before the app was ready", err)
	case <-time.After(30 * time.Second):
		tb.Fatalf("the Python child was not ready within 30s")
	}
}

func mergeFiles(a, b map[string]string) map[string]string {
	for k, v := range b {
		a[k] = v
	}
	return a
}

// client sends requests to the worker socket as edge does: a new
// connection for each.
type client struct {
	sock string
}

func dial(tb testing.TB, sock string) *client {
	return &client{sock: sock}
}

type response struct {
	wire.Head
	stats wire.Stats
	body  []byte
	err   error // from ReadBody
}

func (r response) field(name string) []string {
	var vs []string
	for i := 0; i+1 < len(r.Fields); i += 2 {
		if strings.EqualFold(r.Fields[i], name) {
			vs = append(vs, r.Fields[i+1])
		}
	}
	return vs
}

// environ is a request's environ as edge would build it, mode picking what
// testapp does; kv are more keys and values, later ones winning.
func environ(mode string, kv ...string) []string {
	return append([]string{
		"REQUEST_METHOD", "GET",
		"SCRIPT_NAME", "",
		"PATH_INFO", "/",
		"QUERY_STRING", "",
		"SERVER_NAME", "localhost",
		"SERVER_PORT", "80",
		"SERVER_PROTOCOL", "HTTP/1.1",
		"REMOTE_ADDR", "127.0.0.1",
		"wsgi.url_scheme", "http",
		"HTTP_X_TEST", mode,
	}, kv...)
}

// roundTrip sends one request and reads its response. The error is for a
// response that did not come or whose head was bad; a failed body is in
// response.err.
func (c *client) roundTrip(env []string, body []byte) (response, error) {
	return c.roundTripBy(env, body, time.Time{})
}

// roundTripBy is roundTrip with a deadline in the frame.
func (c *client) roundTripBy(env []string, body []byte, deadline time.Time) (response, error) {
	conn, err := net.Dial("unix", c.sock)
	if err != nil {
		return response{}, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	// One write, as edge does: a worker that has answered may close the
	// connection before a second one.
	if _, err := conn.Write(append(requestFrame(env, len(body), deadline), body...)); err != nil {
		return response{}, err
	}
	return readResponse(conn)
}

// requestFrame is the frame for a request with env and a body of bodyLen
// bytes, sent after it. env is in WSGI's terms, as the tests think of
// it; it goes out as the neutral request edge sends (neutral).
func requestFrame(env []string, bodyLen int, deadline time.Time) []byte {
	var f wire.Request
	fields, headers := neutral(env)
	for _, name := range wire.RequestFields {
		f.Add(fields[name])
	}
	for _, h := range headers {
		f.Add(h)
	}
	return f.Frame(int64(bodyLen), deadline)
}

// neutral turns environ keys and values into the request fields and the
// header list from which the worker builds that environ again, later
// keys winning.
func neutral(env []string) (map[string]string, []string) {
	fields := map[string]string{}
	var headers []string
	script := ""
	for i := 0; i+1 < len(env); i += 2 {
		k, v := env[i], env[i+1]
		switch k {
		case "REQUEST_METHOD":
			fields["method"] = v
		case "SCRIPT_NAME":
			script = v
		case "PATH_INFO":
			fields["path"] = v
		case "QUERY_STRING":
			fields["query"] = v
		case "RAW_URI", "REQUEST_URI":
			fields["target"] = v
		case "SERVER_NAME":
			fields["server_name"] = v
		case "SERVER_PORT":
			fields["server_port"] = v
		case "SERVER_PROTOCOL":
			fields["protocol"] = v
		case "REMOTE_ADDR":
			fields["client_addr"] = v
		case "REMOTE_PORT":
			fields["client_port"] = v
		case "wsgi.url_scheme":
			fields["scheme"] = v
		case "CONTENT_TYPE":
			headers = append(headers, "Content-Type", v)
		case "CONTENT_LENGTH":
			headers = append(headers, "Content-Length", v)
		default:
			name, ok := strings.CutPrefix(k, "HTTP_")
			if !ok {
				panic("no request field for environ key " + k)
			}
			if name == "X_REQUEST_ID" {
				fields["request_id"] = v
			}
			words := strings.Split(strings.ToLower(name), "_")
			for i, w := range words {
				if w != "" {
					words[i] = strings.ToUpper(w[:1]) + w[1:]
				}
			}
			headers = append(headers, strings.Join(words, "-"), v)
		}
	}
	if script != "" {
		fields["root"] = script
		fields["path"] = script + fields["path"]
	}
	if fields["target"] == "" {
		fields["target"] = fields["path"]
		if fields["query"] != "" {
			fields["target"] += "?" + fields["query"]
		}
	}
	// A header given twice: the later one wins, as for other keys.
	seen := map[string]int{}
	var out []string
	for i := 0; i+1 < len(headers); i += 2 {
		if at, ok := seen[headers[i]]; ok {
			out[at+1] = headers[i+1]
			continue
		}
		seen[headers[i]] = len(out)
		out = append(out, headers[i], headers[i+1])
	}
	return fields, out
}

// readResponse reads the one response on conn, as roundTrip does.
func readResponse(conn net.Conn) (response, error) {
	r := bufio.NewReaderSize(conn, 32<<10)
	var resp response
	if err := wire.ReadHead(r, &resp.Head); err != nil {
		return resp, err
	}
	resp.err = wire.ReadBody(r, func(b []byte) error {
		resp.body = append(resp.body, b...)
		return nil
	}, &resp.stats)
	// One request per connection: the worker closes it after the answer.
	if _, err := r.ReadByte(); err != io.EOF && resp.err == nil {
		resp.err = fmt.Errorf("after the response: got %v, want the worker to close the connection", err)
	}
	return resp, nil
}

func (c *client) do(tb testing.TB, env []string, body []byte) response {
	tb.Helper()
	resp, err := c.roundTrip(env, body)
	if err != nil {
		tb.Fatalf("request %q: %v", env, err)
	}
	return resp
}

// json checks a plain 200 and returns its body decoded as JSON into v.
func (r response) json(tb testing.TB, v any) {
	tb.Helper()
	if r.Status != 200 || r.err != nil {
		tb.Fatalf("got %d %s (body error %v): %.300q, want 200", r.Status, r.Reason, r.err, r.body)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		tb.Fatalf("response body %.300q: %v", r.body, err)
	}
}

// latin1 turns a string Python decoded as latin-1 (and JSON carried as
// UTF-8) back into its bytes.
func latin1(tb testing.TB, s string) string {
	tb.Helper()
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 0xff {
			tb.Fatalf("%q holds %U, not a latin-1 character", s, r)
		}
		b = append(b, byte(r))
	}
	return string(b)
}

type echoed struct {
	PID        int               `json:"pid"`
	InputType  string            `json:"input_type"`
	Tail       int               `json:"tail"`
	Sizes      []int             `json:"sizes"`
	Lines      []int             `json:"lines"`
	BodyLen    int               `json:"body_len"`
	BodySHA256 string            `json:"body_sha256"`
	Environ    map[string]string `json:"environ"`
	WSGI       struct {
		Version      []int `json:"version"`
		Multithread  bool  `json:"multithread"`
		Multiprocess bool  `json:"multiprocess"`
		RunOnce      bool  `json:"run_once"`
		Errors       bool  `json:"errors"`
	} `json:"wsgi"`
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestPythonEnviron(t *testing.T) {
	p := startWorker(t, "testapp:app", config.ClassSync, zerolog.WarnLevel, nil)
	c := dial(t, p.sock)

	path := "/caf\xc3\xa9/\xff\x80\x01 x"
	query := "a=1&b=%20&c=\xe9&d"
	resp := c.do(t, environ("echo",
		"PATH_INFO", path,
		"QUERY_STRING", query,
		"HTTP_ACCEPT", "text/html, */*",
		"HTTP_X_CUSTOM_HEADER", "caf\xe9",
		"HTTP_COOKIE", "a=1; b=2",
		"CONTENT_TYPE", "",
	), nil)
	var got echoed
	resp.json(t, &got)

	if p := latin1(t, got.Environ["PATH_INFO"]); p != path {
		t.Errorf("PATH_INFO: got %q, want %q", p, path)
	}
	if q := latin1(t, got.Environ["QUERY_STRING"]); q != query {
		t.Errorf("QUERY_STRING: got %q, want %q", q, query)
	}
	for k, want := range map[string]string{
		"REQUEST_METHOD":       "GET",
		"SCRIPT_NAME":          "",
		"SERVER_NAME":          "localhost",
		"SERVER_PORT":          "80",
		"SERVER_PROTOCOL":      "HTTP/1.1",
		"REMOTE_ADDR":          "127.0.0.1",
		"wsgi.url_scheme":      "http",
		"HTTP_ACCEPT":          "text/html, */*",
		"HTTP_X_CUSTOM_HEADER": "caf\xe9",
		"HTTP_COOKIE":          "a=1; b=2",
		"CONTENT_TYPE":         "",
	} {
		v, ok := got.Environ[k]
		if !ok {
			t.Errorf("environ[%q] missing, want %q", k, want)
			continue
		}
		if v = latin1(t, v); v != want {
			t.Errorf("environ[%q]: got %q, want %q", k, v, want)
		}
	}
	if _, ok := got.Environ["CONTENT_LENGTH"]; ok {
		t.Errorf("environ has CONTENT_LENGTH though the request did not send one")
	}
	w := got.WSGI
	if !reflect.DeepEqual(w.Version, []int{1, 0}) || w.Multithread || !w.Multiprocess || w.RunOnce || !w.Errors {
		t.Errorf("wsgi.*: got %+v, want version [1 0], multithread false, multiprocess true, run_once false, errors with write", w)
	}
	if got.BodyLen != 0 || got.Tail != 0 || got.InputType != "BytesIO" {
		t.Errorf("wsgi.input for no body: got %d bytes then %d, %s; want 0, 0, BytesIO", got.BodyLen, got.Tail, got.InputType)
	}
	if ct := resp.field("Content-Type"); !reflect.DeepEqual(ct, []string{"application/json"}) {
		t.Errorf("Content-Type: got %q, want [application/json]", ct)
	}
}

// body3MB is 3 MiB of lines of many lengths, one of them longer than the
// worker's 64 KiB reads, the last one without its newline.
func body3MB() []byte {
	var b bytes.Buffer
	rnd := rand.New(rand.NewSource(1))
	for i := 0; b.Len() < 3<<20; i++ {
		n := 6 + (i*7919)%5000
		if i == 40 {
			n = 200 << 10
		}
		for j := 0; j < n; j++ {
			b.WriteByte(byte('a' + rnd.Intn(26)))
		}
		b.WriteByte('\n')
	}
	return b.Bytes()[:3<<20]
}

func TestPythonInput(t *testing.T) {
	p := startWorker(t, "testapp:app", config.ClassSync, zerolog.WarnLevel, nil)
	c := dial(t, p.sock) // one connection for all: each body must be used up exactly

	small := []byte("0123\n56789")
	mid := bytes.Repeat([]byte("line of text\n"), 40000)[:500000] // under the 1 MiB in-memory limit
	big := body3MB()
	if bytes.HasSuffix(big, []byte("\n")) {
		t.Fatal("body3MB should not end in a newline")
	}

	tests := []struct {
		name  string
		read  string
		body  []byte
		input string
		sizes []int
	}{
		{name: "10 bytes, read()", read: "all", body: small, input: "BytesIO"},
		{name: "10 bytes, read(n)", read: "pieces", body: small, input: "BytesIO", sizes: []int{7, 3, 0, 0, 0}},
		{name: "10 bytes, readline", read: "lines", body: small, input: "BytesIO"},
		{name: "500 KB, readline", read: "lines", body: mid, input: "BytesIO"},
		{name: "3 MB, read()", read: "all", body: big, input: "Input"},
		{name: "3 MB, read(n)", read: "pieces", body: big, input: "Input", sizes: []int{7, 70000, 0, len(big) - 70007, 0}},
		{name: "3 MB, readline", read: "lines", body: big, input: "Input"},
		{name: "3 MB, readlines", read: "readlines", body: big, input: "Input"},
		{name: "3 MB, not read", read: "none", body: big, input: "Input"},
		{name: "10 bytes, not read", read: "none", body: small, input: "BytesIO"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := c.do(t, environ("echo",
				"REQUEST_METHOD", "POST",
				"CONTENT_LENGTH", fmt.Sprint(len(tt.body)),
				"HTTP_X_READ", tt.read,
			), tt.body)
			var got echoed
			resp.json(t, &got)
			if got.InputType != tt.input {
				t.Errorf("wsgi.input is %s, want %s", got.InputType, tt.input)
			}
			want := tt.body
			if tt.read == "none" {
				want = nil
			}
			if got.BodyLen != len(want) || got.BodySHA256 != sha(want) {
				t.Errorf("app read %d bytes (sha256 %.12s), want %d (%.12s)", got.BodyLen, got.BodySHA256, len(want), sha(want))
			}
			if got.Tail != 0 {
				t.Errorf("read() after the whole body gave %d more bytes, want 0", got.Tail)
			}
			if tt.sizes != nil && !reflect.DeepEqual(got.Sizes, tt.sizes) {
				t.Errorf("read(7), read(70000), read(0), read(-1), read(10) gave %v bytes, want %v", got.Sizes, tt.sizes)
			}
			if tt.read == "lines" || tt.read == "readlines" {
				var want []int
				for i, l := range bytes.SplitAfter(tt.body, []byte("\n")) {
					switch {
					case len(l) == 0:
					case i == 0 && tt.read == "lines" && len(l) > 5: // readline(5) first
						want = append(want, 5, len(l)-5)
					default:
						want = append(want, len(l))
					}
				}
				if !reflect.DeepEqual(got.Lines, want) {
					t.Errorf("line lengths: got %d lines %.20v..., want %d lines %.20v...", len(got.Lines), got.Lines, len(want), want)
				}
			}
		})
	}

	// After all that, the connection is still in step.
	var got echoed
	c.do(t, environ("echo"), nil).json(t, &got)
	if got.BodyLen != 0 {
		t.Errorf("a GET after the bodies read %d bytes, want 0", got.BodyLen)
	}
}

// TestPythonBigAnswerUnreadBody sends, as edge does, the whole request
// body before reading the answer. The worker must take the body off the
// socket even when the app answers first, or both ends wait on each other
// with full socket buffers.
func TestPythonBigAnswerUnreadBody(t *testing.T) {
	p := startWorker(t, "testapp:app", config.ClassSync, zerolog.WarnLevel, nil)
	c := dial(t, p.sock)
	big := body3MB()
	answer := 4 << 20

	resp, err := c.roundTrip(environ("big", "REQUEST_METHOD", "POST", "HTTP_X_SIZE", fmt.Sprint(answer)), big)
	if err != nil {
		t.Fatalf("3 MB body, 4 MB answer without reading it: %v", err)
	}
	if resp.Status != 200 || resp.err != nil || len(resp.body) != answer {
		t.Errorf("got %d with %d bytes (%v), want 200 with %d", resp.Status, len(resp.body), resp.err, answer)
	}

	// The app may still read the body after part of its answer went out.
	resp, err = c.roundTrip(environ("big_then_read", "REQUEST_METHOD", "POST", "HTTP_X_SIZE", fmt.Sprint(answer)), big)
	if err != nil {
		t.Fatalf("3 MB body read after a 4 MB yield: %v", err)
	}
	want := strings.Repeat("x", answer) + fmt.Sprintf("\n%d %s", len(big), sha(big))
	if resp.Status != 200 || resp.err != nil || string(resp.body) != want {
		t.Errorf("got %d with %d bytes ending %q (%v), want 200 with %d ending %q",
			resp.Status, len(resp.body), resp.body[max(0, len(resp.body)-80):], resp.err, len(want), want[len(want)-80:])
	}

	// The connection is still in step.
	var pid struct{ PID int }
	c.do(t, environ("pid"), nil).json(t, &pid)
}

func TestPythonResponses(t *testing.T) {
	blob := make([]byte, 250001)
	rand.New(rand.NewSource(2)).Read(blob)
	p := startWorker(t, "testapp:app", config.ClassSync, zerolog.WarnLevel, map[string]string{"blob.bin": string(blob)})
	c := dial(t, p.sock) // after each case the next request must work
	big := strings.Repeat("x", 300<<10)
	ise := "Internal Server Error\n"
	js := asciiJSON

	tests := []struct {
		name    string
		env     []string
		status  int
		reason  string
		fields  []string // nil: not checked
		body    string
		bodyErr error
	}{
		{name: "exc_info before anything was sent replaces the response", env: environ("exc_info"),
			status: 503, reason: "Oops", fields: []string{"X-Second", "2"}, body: "handled"},
		{name: "exc_info after the head was sent re-raises: abort", env: environ("exc_info_after_send"),
			status: 200, fields: []string{"X-First", "1"}, body: big, bodyErr: wire.ErrAborted},
		{name: "start_response twice without exc_info", env: environ("start_twice"),
			status: 500, body: ise},
		{name: "raise before start_response", env: environ("raise_early"),
			status: 500, reason: "Internal Server Error", fields: []string{"Content-Type", "text/plain; charset=utf-8"}, body: ise},
		{name: "raise after a small yield, nothing sent yet", env: environ("raise_mid", "HTTP_X_SIZE", "10"),
			status: 500, body: ise},
		{name: "raise after yielding data that was sent: abort", env: environ("raise_mid", "HTTP_X_SIZE", fmt.Sprint(300<<10)),
			status: 200, body: strings.Repeat("a", 300<<10), bodyErr: wire.ErrAborted},
		{name: "write callable", env: environ("write"),
			status: 200, body: "abc" + big + "def"},
		{name: "iterable with close", env: environ("close", "QUERY_STRING", "first"),
			status: 200, body: "one,two"},
		{name: "iterable with close that raises", env: environ("close", "QUERY_STRING", "second", "HTTP_X_FAIL", "1"),
			status: 500, body: ise},
		{name: "file_wrapper", env: environ("file"),
			status: 200, fields: []string{"Content-Type", "application/octet-stream"}, body: string(blob)},
		{name: "unknown mode", env: environ("nope"), status: 404, reason: "Not Found", fields: []string{}, body: "no such mode nope"},

		// An app's bad status or headers must give a 500, not a closed
		// connection (which edge may retry on another worker) nor a head
		// that says something else than the app meant.
		{name: "CR LF in a header value", env: environ("header", "HTTP_X_VALUE", js("a\r\nSet-Cookie: x=1")), status: 500, body: ise},
		{name: "header value not latin-1", env: environ("header", "HTTP_X_VALUE", js("5 €")), status: 500, body: ise},
		{name: "latin-1 header value", env: environ("header", "HTTP_X_VALUE", js("café")),
			status: 200, fields: []string{"X-Value", "caf\xe9"}, body: "ok"},
		// What edged refuses in a head must be refused here too: a 500
		// with the traceback logged, not a 502 from a head edged cannot use.
		{name: "space in a header name", env: environ("header", "HTTP_X_NAME", js("X Value"), "HTTP_X_VALUE", js("v")), status: 500, body: ise},
		{name: "colon in a header name", env: environ("header", "HTTP_X_NAME", js("X-Value:"), "HTTP_X_VALUE", js("v")), status: 500, body: ise},
		{name: "empty header name", env: environ("header", "HTTP_X_NAME", js(""), "HTTP_X_VALUE", js("v")), status: 500, body: ise},
		{name: "control character in a header value", env: environ("header", "HTTP_X_VALUE", js("a\x01b")), status: 500, body: ise},
		{name: "DEL in a header value", env: environ("header", "HTTP_X_VALUE", js("a\x7fb")), status: 500, body: ise},
		{name: "tab in a header value", env: environ("header", "HTTP_X_VALUE", js("a\tb")),
			status: 200, fields: []string{"X-Value", "a\tb"}, body: "ok"},
		{name: "header made not latin-1 after start_response", env: environ("mutate"), status: 500, body: ise},
		{name: "NUL in the status", env: environ("status", "HTTP_X_VALUE", js("200 OK\x00X-Injected\x00yes")), status: 500, body: ise},
		{name: "LF in the status", env: environ("status", "HTTP_X_VALUE", js("200 OK\r\nX-Injected: yes")), status: 500, body: ise},
		{name: "status not latin-1", env: environ("status", "HTTP_X_VALUE", js("200 ÖK €")), status: 500, body: ise},
		{name: "escape in the reason, which edged does not use", env: environ("status", "HTTP_X_VALUE", js("299 A\x1bB")),
			status: 299, fields: []string{}, body: "ok"},
		{name: "status code under 100", env: environ("status", "HTTP_X_VALUE", js("099 Low")), status: 500, body: ise},
		{name: "status with non-ASCII digits", env: environ("status", "HTTP_X_VALUE", js("²00 OK")), status: 500, body: ise},
		{name: "status with latin-1 reason", env: environ("status", "HTTP_X_VALUE", js("299 Très bien")),
			status: 299, reason: "Tr\xe8s bien", fields: []string{}, body: "ok"},
		// HTTP has no status past 599: edged would refuse it (502).
		{name: "status code over 599", env: environ("status", "HTTP_X_VALUE", js("999 Whatever")), status: 500, body: ise},
		{name: "status code 600", env: environ("status", "HTTP_X_VALUE", js("600 Past")), status: 500, body: ise},
		{name: "highest status code", env: environ("status", "HTTP_X_VALUE", js("599 Last")),
			status: 599, reason: "Last", fields: []string{}, body: "ok"},
		// A header the app adds to its list after start_response is
		// checked as the head goes out: a NUL in it would otherwise end
		// the value on the wire and start a header of the app's data.
		{name: "NUL in a header added after start_response", env: environ("inject"),
			status: 500, fields: []string{"Content-Type", "text/plain; charset=utf-8"}, body: ise},
		{name: "NUL in a header added after start_response, streamed", env: environ("inject_stream"),
			status: 500, fields: []string{"Content-Type", "text/plain; charset=utf-8"}, body: ise},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := c.roundTrip(tt.env, nil)
			if err != nil {
				t.Fatalf("got %v, want a %d response", err, tt.status)
			}
			if resp.Status != tt.status || tt.reason != "" && resp.Reason != tt.reason {
				t.Errorf("got %d %q, want %d %q", resp.Status, resp.Reason, tt.status, tt.reason)
			}
			if tt.fields != nil && !(len(resp.Fields) == 0 && len(tt.fields) == 0 || reflect.DeepEqual(resp.Fields, tt.fields)) {
				t.Errorf("headers: got %q, want %q", resp.Fields, tt.fields)
			}
			if string(resp.body) != tt.body {
				t.Errorf("body: got %d bytes %.60q, want %d bytes %.60q", len(resp.body), resp.body, len(tt.body), tt.body)
			}
			if !errors.Is(resp.err, tt.bodyErr) {
				t.Errorf("body ended with %v, want %v", resp.err, tt.bodyErr)
			}
			// The same connection serves the next request.
			var pid struct{ PID int }
			c.do(t, environ("pid"), nil).json(t, &pid)
		})
	}

	var closed []string
	c.do(t, environ("closed"), nil).json(t, &closed)
	if want := []string{"first", "second"}; !reflect.DeepEqual(closed, want) {
		t.Errorf("close() was called for %q, want %q", closed, want)
	}
	var files []bool
	c.do(t, environ("files_closed"), nil).json(t, &files)
	if want := []bool{true}; !reflect.DeepEqual(files, want) {
		t.Errorf("files given to wsgi.file_wrapper closed: %v, want %v", files, want)
	}
}

// logBuffer collects workerd's log for a test to read while it runs.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// events returns the log's events with the message msg.
func (l *logBuffer) events(tb testing.TB, msg string) []map[string]any {
	tb.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var evs []map[string]any
	for _, line := range strings.Split(l.b.String(), "\n") {
		var ev map[string]any
		if line == "" {
			continue
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			tb.Fatalf("log line %q: %v", line, err)
		}
		if ev["message"] == msg {
			evs = append(evs, ev)
		}
	}
	return evs
}

// waitEvents is events(msg) once there are at least n of them, or after
// 5s: workerd logs what the Python side reports through a pipe of its
// own, which may come after the answer the event is about.
func (l *logBuffer) waitEvents(tb testing.TB, msg string, n int) []map[string]any {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		evs := l.events(tb, msg)
		if len(evs) >= n || time.Now().After(deadline) {
			return evs
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A header the app added after start_response, its value holding NUL,
// fails as any bad header does: a 500, and the app's error logged with
// its traceback, whether the head goes out at the end (buffered) or with
// the first chunk (streamed).
func TestPythonHeaderAddedLate(t *testing.T) {
	var logs logBuffer
	p := listenWorker(t, "testapp:app", config.ClassSync, zerolog.WarnLevel, nil)
	p.log = zerolog.New(&logs)
	p.run(t)
	p.waitReady(t)
	for i, mode := range []string{"inject", "inject_stream"} {
		t.Run(mode, func(t *testing.T) {
			resp := dial(t, p.sock).do(t, environ(mode), nil)
			if resp.Status != 500 || len(resp.field("Set-Cookie")) != 0 {
				t.Errorf("got %d with headers %q, want 500 without Set-Cookie", resp.Status, resp.Fields)
			}
			// The event is written before the answer, but workerd may
			// not have read it yet.
			var evs []map[string]any
			for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
				if evs = logs.events(t, "app raised"); len(evs) > i {
					break
				}
			}
			if len(evs) <= i {
				t.Fatalf("%d \"app raised\" events logged, want %d", len(evs), i+1)
			}
			tb, _ := evs[i]["traceback"].(string)
			if want := `AssertionError: header ('X-A', 'v\x00Set-Cookie\x00injected=1') holds a control character`; !strings.Contains(tb, want) {
				t.Errorf("traceback %q, want one with %q", tb, want)
			}
		})
	}
}

func TestPythonImportError(t *testing.T) {
	tests := []struct {
		module  string
		files   map[string]string
		summary string // prefix
		// traceback is a part of the traceback, "" for none: a failure
		// with no frame of the app's has only its summary.
		traceback string
	}{
		{module: "no_such_module_xyz:app", summary: "ModuleNotFoundError: No module named 'no_such_module_xyz'"},
		{module: "testapp:missing", summary: "module testapp has no missing: name the WSGI callable"},
		{module: "testapp:CLOSED", summary: "testapp:CLOSED gave list, not a WSGI callable"},
		{module: "broken:app", files: map[string]string{"broken.py": "import os\nraise RuntimeError('boom at import')\n"},
			summary: "RuntimeError: boom at import", traceback: "broken.py\", line 2"},
		{module: "badsyntax:app", files: map[string]string{"badsyntax.py": "def app(:\n"}, summary: "SyntaxError: ", traceback: "badsyntax.py\", line 1"},
		{module: "exits:app", files: map[string]string{"exits.py": "import sys\nsys.exit(7)\n"}, summary: "SystemExit: 7", traceback: "exits.py\", line 2"},
		{module: "factory:make()", files: map[string]string{"factory.py": "def make():\n    raise KeyError('DATABASE_URL')\n"},
			summary: "KeyError: 'DATABASE_URL'", traceback: "factory.py\", line 2, in make"},
	}
	for _, tt := range tests {
		t.Run(tt.module, func(t *testing.T) {
			p := runWorker(t, tt.module, config.ClassSync, zerolog.Disabled, tt.files)
			var err error
			select {
			case err = <-p.done:
				p.done <- err
			case <-time.After(30 * time.Second):
				t.Fatalf("Run did not return within 30s for an app that cannot import")
			}
			var ie *ImportError
			if !errors.As(err, &ie) {
				t.Fatalf("Run returned %v (%T), want an *ImportError", err, err)
			}
			if ie.Module != tt.module || !strings.HasPrefix(ie.Summary, tt.summary) {
				t.Errorf("got ImportError{Module: %q, Summary: %q}, want module %q, summary starting %q", ie.Module, ie.Summary, tt.module, tt.summary)
			}
			if tt.traceback == "" && ie.Traceback != "" || !strings.Contains(ie.Traceback, tt.traceback) {
				t.Errorf("Traceback is %q, want one with %q", ie.Traceback, tt.traceback)
			}
			if strings.Contains(ie.Traceback, "edged_worker/") {
				t.Errorf("Traceback shows the worker's own frames: %q", ie.Traceback)
			}
			if n := p.w.Restarts(); n != 0 {
				t.Errorf("Restarts() = %d, want 0: an import error is not worth a restart", n)
			}
			select {
			case <-p.w.Ready:
				t.Errorf("Ready was closed for an app that never loaded")
			default:
			}
		})
	}
}

func TestPythonRestartAfterKill(t *testing.T) {
	p := startWorker(t, "testapp:app", config.ClassSync, zerolog.WarnLevel, nil)
	c := dial(t, p.sock)
	var before struct{ PID int }
	c.do(t, environ("pid"), nil).json(t, &before)

	if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// A killed process runs on until the kernel gets to it: on a busy
	// machine it can still accept a connection first, and reset it.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", before.PID))
		if err != nil || strings.Contains(string(b), ") Z ") {
			break
		}
	}

	// Connections made while no child runs wait in the backlog: none is
	// refused, and each is served once the next child is up.
	var wg sync.WaitGroup
	pids := make(chan int, 5)
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 30 * time.Millisecond)
			resp, err := c.roundTrip(environ("pid"), nil)
			if err != nil || resp.Status != 200 {
				t.Errorf("request %d after the kill: %d, %v", i, resp.Status, err)
				return
			}
			var after struct{ PID int }
			if err := json.Unmarshal(resp.body, &after); err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			pids <- after.PID
		}()
	}
	wg.Wait()
	close(pids)
	for pid := range pids {
		if pid == before.PID {
			t.Errorf("served by pid %d, the child that was killed", pid)
		}
	}
	if n := p.w.Restarts(); n != 1 {
		t.Errorf("Restarts() = %d, want 1", n)
	}
}

func TestPythonThreads(t *testing.T) {
	p := startWorker(t, "testapp:app", config.ClassThreads, zerolog.WarnLevel, nil)
	// Regression: idle threads shared one poll object, and the second to
	// wait on it at once died ("concurrent poll() invocation"), leaving
	// the worker with fewer threads. Idle first, past several waits.
	time.Sleep(4 * ACCEPT_WAIT)
	// The app holds each request until four are inside it at once, so
	// this passes only if the four threads serve them concurrently.
	type result struct {
		Thread      string
		Multithread bool
	}
	results := make(chan result, 4)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := dial(t, p.sock).roundTrip(environ("barrier"), nil)
			if err != nil || resp.Status != 200 {
				t.Errorf("request %d: %d %.200q, %v", i, resp.Status, resp.body, err)
				return
			}
			var r result
			if err := json.Unmarshal(resp.body, &r); err != nil {
				t.Error(err)
				return
			}
			results <- r
		}()
	}
	wg.Wait()
	close(results)
	threads := map[string]bool{}
	for r := range results {
		threads[r.Thread] = true
		if !r.Multithread {
			t.Errorf("wsgi.multithread is false in the threads class")
		}
	}
	if len(threads) != 4 {
		t.Errorf("served by %d distinct threads %v, want 4", len(threads), threads)
	}
}

// FuzzWorkerFrame sends a request frame whose strings (the request
// fields and headers) are fuzzed to a running Python child. The child
// must answer with a response edge can read, or close the connection;
// either way it must go on serving.
func FuzzWorkerFrame(f *testing.F) {
	good := strings.Join([]string{"POST", "http", "HTTP/1.1", "/caf%e9?a=1", "/caf\xe9", "a=1", "", "x", "80", "127.0.0.1", "", "id", "Host", "x"}, "\x00")
	f.Add([]byte(good), []byte(nil))
	f.Add([]byte(good), []byte("body bytes"))
	f.Add([]byte("GET"), []byte(nil)) // too few fields
	f.Add([]byte(good+"\x00Odd"), []byte("x"))
	f.Add([]byte(""), []byte(nil))
	f.Add([]byte("\x00"), []byte(nil))
	f.Add([]byte(strings.Repeat("\x00", 13)), []byte("\x00"))
	f.Add([]byte(strings.Repeat("\x00", 11)+"\x00Wsgi.input\x00x\x00Content-Length\x00999999"), []byte("abc"))
	f.Add([]byte(good+"\x00\xff\xfe\x00\x80\x00X\x00"+strings.Repeat("v", 70000)), []byte("\n\n"))
	f.Add([]byte(strings.Repeat("/\x00", 6)+"/\x00/\x00/\x00/\x00/\x00/"), bytes.Repeat([]byte("b"), 4096))

	// Malformed frames make the child log a warning each: keep errors only.
	p := startWorker(f, "testapp:fuzz_app", config.ClassSync, zerolog.ErrorLevel, nil)
	health := environ("health")

	f.Fuzz(func(t *testing.T, env, body []byte) {
		if len(body) > 4096 {
			body = body[:4096]
		}
		conn, err := net.Dial("unix", p.sock)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		// The fixed part as edge writes it, the fuzzed strings, the body.
		payload := make([]byte, wire.RequestFixed)
		binary.LittleEndian.PutUint64(payload[8:], uint64(len(body)))
		frame := wire.AppendHeader(nil, wire.TypeRequest, 0, len(payload)+len(env))
		frame = append(append(frame, payload...), env...)
		if len(body) > 0 {
			frame = wire.AppendBody(frame, body)
		}
		if _, err := conn.Write(frame); err != nil && !closedErr(err) {
			t.Fatalf("write: %v", err)
		}
		r := bufio.NewReader(conn)
		var h wire.Head
		switch err := wire.ReadHead(r, &h); {
		case err == nil:
			if h.Status != 200 && h.Status != 500 {
				t.Errorf("got status %d, want 200 or 500", h.Status)
			}
			n := 0
			if err := wire.ReadBody(r, func(b []byte) error { n += len(b); return nil }, nil); err != nil && !errors.Is(err, wire.ErrAborted) {
				t.Errorf("after a %d head the body failed: %v", h.Status, err)
			}
		case closedErr(err):
			// The child refused the frame and hung up: allowed.
		default:
			t.Errorf("the child neither answered nor closed the connection: %v", err)
		}
		conn.Close()

		// The child still serves a new connection.
		resp, err := dial(t, p.sock).roundTrip(health, nil)
		if err != nil || resp.Status != 200 || resp.err != nil {
			t.Fatalf("a good request after the fuzzed frame got %d, %v, %v", resp.Status, err, resp.err)
		}
		if n := p.w.Restarts(); n != 0 {
			t.Fatalf("the Python child died: Restarts() = %d", n)
		}
	})
}

// asciiJSON is s as a JSON string in ASCII, so that it reaches the app
// whole whatever the environ's latin-1 decoding.
func asciiJSON(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r >= 0x7f:
			for _, u := range utf16.Encode([]rune{r}) {
				fmt.Fprintf(&b, "\\u%04x", u)
			}
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// closedErr says the peer closed the connection.
func closedErr(err error) bool {
	return err == io.EOF || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// A request whose deadline passed while it waited in the queue is not
// run: the worker answers that it expired, and the app never sees it.
func TestPythonExpired(t *testing.T) {
	for _, class := range []string{config.ClassSync, config.ClassThreads} {
		t.Run(class, func(t *testing.T) {
			p := startWorker(t, "testapp:app", class, zerolog.WarnLevel, nil)
			c := dial(t, p.sock)
			_, err := c.roundTripBy(environ("echo"), nil, time.Now().Add(-time.Millisecond))
			if !errors.Is(err, wire.ErrExpired) {
				t.Errorf("a request past its deadline: got %v, want %v", err, wire.ErrExpired)
			}
			resp, err := c.roundTripBy(environ("echo"), nil, time.Now().Add(time.Minute))
			if err != nil || resp.Status != 200 {
				t.Errorf("a request within its deadline: %v, status %d; want 200", err, resp.Status)
			}
			if resp.Worker != "1" {
				t.Errorf("the answer names worker %q, want \"1\"", resp.Worker)
			}
		})
	}
}

// TestPythonStopUnderLock: the SIGTERM handler runs on the main thread
// between two bytecodes, possibly while that thread holds the worker's
// lock (a sync worker finishing a request). It must not wait for the
// lock: that wait would never end, and the worker would hang until
// workerd killed it.
func TestPythonStopUnderLock(t *testing.T) {
	py := interpreter(t)
	// Imported from files, the package only defines: nothing runs, no
	// descriptor is opened.
	pkg := pyPackage(t)
	tests := []struct {
		name     string
		busy     int
		wantOut  string
		wantCode int
	}{
		{"busy", 1, "stopping=True\n", 3},
		{"idle", 0, "stopping=True\n", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			script := fmt.Sprintf(`
import os, sys
sys.path.insert(0, %q)
from edged_worker import sync, wsgi
w = sync.Worker(None, {"threads": 1}, None, wsgi.Handler)
w.busy = %d
with w.lock:
    w.stop()  # as the handler would run here
print("stopping=%%s" %% w.stopping)
sys.exit(3)
`, pkg, tt.busy)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, py, "-c", script)
			out, err := cmd.CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("stop() under the lock hung: %s", out)
			}
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if string(out) != tt.wantOut || code != tt.wantCode {
				t.Errorf("got %q, exit %d; want %q, exit %d", out, code, tt.wantOut, tt.wantCode)
			}
		})
	}
}

// Every answer ends with what the worker measured: when it took the
// request, the app's wall and CPU time, its pid and RSS. CPU is the
// thread's, so a request that waits shows wall time and next to no CPU;
// under gevent, where one thread runs every greenlet, CPU is unknown (-1).
func TestPythonMeasures(t *testing.T) {
	for _, class := range []string{config.ClassSync, config.ClassThreads, config.ClassGevent} {
		t.Run(class, func(t *testing.T) {
			if class == config.ClassGevent {
				needGevent(t)
			}
			p := startWorker(t, "testapp:app", class, zerolog.WarnLevel, nil)
			c := dial(t, p.sock)
			sent := time.Now()
			wait := c.do(t, environ("wait"), nil)
			spin := c.do(t, environ("spin"), nil)
			var pid struct{ PID int }
			c.do(t, environ("pid"), nil).json(t, &pid)
			for _, r := range []response{wait, spin} {
				st := r.stats
				taken := time.Unix(0, st.Taken)
				if taken.Before(sent.Add(-time.Second)) || taken.After(time.Now()) {
					t.Errorf("taken at %v, want between the send (%v) and now", taken, sent)
				}
				if st.Wall < 190*time.Millisecond || st.Wall > 5*time.Second {
					t.Errorf("wall %v, want about 200ms", st.Wall)
				}
				if int(st.PID) != pid.PID || st.RSS < 1024 {
					t.Errorf("pid %d rss %d KiB, want pid %d and some memory", st.PID, st.RSS, pid.PID)
				}
			}
			if class == config.ClassGevent {
				if wait.stats.CPU != -1 || spin.stats.CPU != -1 {
					t.Errorf("gevent CPU %v, %v; want -1 (unknown)", wait.stats.CPU, spin.stats.CPU)
				}
				return
			}
			if wait.stats.CPU > 50*time.Millisecond {
				t.Errorf("a request asleep 200 ms used %v of CPU, want next to none", wait.stats.CPU)
			}
			if spin.stats.CPU < 150*time.Millisecond {
				t.Errorf("a request spinning 200 ms used %v of CPU, want about 200ms", spin.stats.CPU)
			}
		})
	}
}

func needGevent(t *testing.T) {
	t.Helper()
	if err := exec.Command(interpreter(t), "-c", "import gevent").Run(); err != nil {
		t.Skipf("!!! SKIPPING: %s cannot import gevent (install python3-gevent: `make deps`) !!!", interpreter(t))
	}
}

// ACCEPT_WAIT is the Python side's ACCEPT_WAIT_MS: how long an idle thread
// waits in accept() before it looks whether the worker is stopping.
const ACCEPT_WAIT = 250 * time.Millisecond

// A stopping worker takes no new request and ends once its own are done:
// idle, at once, in every class. Regression: the gevent class could not
// end its acceptor (the main greenlet has no kill()) and sat until
// pool.graceful_timeout made workerd kill it.
func TestPythonStopsPromptly(t *testing.T) {
	for _, class := range []string{config.ClassSync, config.ClassThreads, config.ClassGevent} {
		t.Run(class, func(t *testing.T) {
			if class == config.ClassGevent {
				needGevent(t)
			}
			py := interpreter(t)
			dir := t.TempDir()
			app, _ := os.ReadFile(filepath.Join("testdata", "testapp.py"))
			os.WriteFile(filepath.Join(dir, "testapp.py"), app, 0o644)
			cfg, err := config.Parse("test.toml", dir, []byte(fmt.Sprintf(
				"[app]\nmodule = \"testapp:app\"\ndirectory = %q\npython = %q\n[pool]\nclass = %q\nthreads = 4\nsocket_dir = %q\ngraceful_timeout = \"20s\"\n",
				dir, py, class, dir)))
			if err != nil {
				t.Fatal(err)
			}
			ln, err := sd.ListenUnix(filepath.Join(dir, config.QueueSocket), 64)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			var logs bytes.Buffer
			w := New(cfg, "1", zerolog.New(zerolog.SyncWriter(&logs)))
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- w.Run(ctx, ln) }()
			select {
			case <-w.Ready:
			case <-time.After(30 * time.Second):
				t.Fatal("not ready")
			}
			time.Sleep(4 * ACCEPT_WAIT)
			c := dial(t, filepath.Join(dir, config.QueueSocket))
			c.do(t, environ("echo"), nil)
			start := time.Now()
			cancel()
			select {
			case <-done:
			case <-time.After(25 * time.Second):
				t.Fatal("Run did not return")
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("an idle %s worker took %v to stop, want about a second at most", class, took)
			}
			if strings.Contains(logs.String(), `"level":"error"`) {
				t.Errorf("errors in the worker's log:\n%s", logs.String())
			}
		})
	}
}

// queue sends a request frame with no body to the worker socket, as edge
// does, and leaves the connection to the caller.
func queue(tb testing.TB, sock string, env []string) *net.UnixConn {
	tb.Helper()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := conn.Write(requestFrame(env, 0, time.Time{})); err != nil {
		tb.Fatal(err)
	}
	return conn.(*net.UnixConn)
}

// ran is what the app's "record" mode has run, in order.
func (p *pyWorker) ran(tb testing.TB) []string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(p.dir, "ran.log"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		tb.Fatal(err)
	}
	return strings.Fields(string(b))
}

// giveUp does what edged does to a request whose client went away: a
// Gone frame after it, and its writing side shut down.
func giveUp(t *testing.T, c *net.UnixConn) {
	t.Helper()
	if _, err := c.Write(wire.AppendHeader(nil, wire.TypeGone, 0, 0)); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
}

// A request whose client went away while it waited in the queue is not
// run. edge then writes a Gone frame after it and shuts down its writing
// side of the connection, and may close it, but the connection stays in
// the queue: the worker that takes it must find that out before it calls
// the app. One whose connection edge keeps open runs.
func TestPythonClientGone(t *testing.T) {
	for _, class := range []string{config.ClassSync, config.ClassThreads, config.ClassGevent} {
		t.Run(class, func(t *testing.T) {
			if class == config.ClassGevent {
				needGevent(t)
			}
			p := listenWorker(t, "testapp:app", class, zerolog.WarnLevel, nil)
			// All queued before the worker starts, so that none is taken
			// before edge's hang-up.
			closed := queue(t, p.sock, environ("record", "HTTP_X_ID", "closed"))
			giveUp(t, closed)
			closed.Close()
			// As edge gives up a request: it reads on until the worker
			// closes, to know it was dropped.
			shut := queue(t, p.sock, environ("record", "HTTP_X_ID", "shut"))
			giveUp(t, shut)
			kept := queue(t, p.sock, environ("record", "HTTP_X_ID", "kept"))
			p.run(t)
			p.waitReady(t)

			if b, err := io.ReadAll(shut); err != nil || len(b) != 0 {
				t.Errorf("a request edge hung up on: got %q, %v; want the connection closed with no answer", b, err)
			}
			resp, err := readResponse(kept)
			if err != nil {
				t.Fatalf("a request whose connection stayed open: %v", err)
			}
			var got struct{ Ran string }
			resp.json(t, &got)
			// Sent to a running worker, not queued before it.
			dial(t, p.sock).do(t, environ("record", "HTTP_X_ID", "after"), nil).json(t, &got)

			ran := p.ran(t)
			slices.Sort(ran)
			if want := []string{"after", "kept"}; !slices.Equal(ran, want) {
				t.Errorf("the app ran %q, want %q", ran, want)
			}
		})
	}
}

// The hang-up check on the Python side alone, on a socket pair for each
// kind of connection the classes hand it (a descriptor in base.FdConn, a
// non-blocking one in gevent's FdConn): a request of up to GONE_MARKED,
// read whole in one read or several, is known to be given up by the GONE
// frame read with it, a bigger one by a poll for the hang-up; the app
// runs only for an open connection,
// a skipped request is counted, and the count is in the stats event.
func TestPythonHangUpCheck(t *testing.T) {
	py := interpreter(t)
	pkg := pyPackage(t)
	for _, class := range []string{config.ClassSync, config.ClassGevent} {
		t.Run(class, func(t *testing.T) {
			if class == config.ClassGevent {
				needGevent(t)
			}
			script := fmt.Sprintf(`
import io, json, os, sys
if %[2]q == "gevent":
    from gevent import monkey
    monkey.patch_all()
import socket, threading, time
sys.path.insert(0, %[1]q)
from edged_worker import base, events, wsgi
if %[2]q == "gevent":
    from edged_worker.gevent import Worker, FdConn
else:
    from edged_worker.sync import Worker
`+pyFrame+`
ran = []
def app(environ, start_response):
    ran.append(environ["PATH_INFO"])
    start_response("200 OK", [])
    return [b"ok"]
w = Worker(app, {"threads": 1}, None, wsgi.Handler)

def frame(path, body_len=0):
    return request_frame("GET", path, body_len)

polls = []
real_poll = w.poll
def counted_poll():
    polls.append(1)
    return real_poll()
w.poll = counted_poll

def serve(path, hang_up, body_len=0, body=b""):
    edge, ours = socket.socketpair()
    data = frame(path, body_len) + body
    if hang_up and len(body) == body_len:
        # A whole request given up: edged writes GONE after it.
        data += _f.GONE_FRAME
    edge.sendall(data)
    if hang_up == "shut":
        edge.shutdown(socket.SHUT_WR)
    elif hang_up == "close":
        edge.close()
    fd = ours.detach()
    if %[2]q == "gevent":
        os.set_blocking(fd, False)
        conn = FdConn(fd)
        w.serve(conn)
        conn.close()
    else:
        w.serve(base.FdConn(fd))
        os.close(fd)
    if hang_up == "close":
        return None
    answer = b""
    while True:
        b = edge.recv(1 << 16)
        if not b:
            return len(answer)
        answer += b

out = {}
out["open"] = serve("/open", None)
out["shut"] = serve("/shut", "shut")
out["close"] = serve("/close", "close")
# A body over MEMORY_BODY is read as the app reads it: the check comes
# after its first part.
out["big_shut"] = serve("/big", "shut", body_len=2 << 20, body=b"x" * 1000)
# A body read whole, in more than one read.
out["medium_shut"] = serve("/medium", "shut", body_len=100000, body=b"y" * 100000)
out["ran"] = ran
out["polls"] = len(polls)
out["skipped"] = w.skipped
events.PIPE = io.StringIO()
threading.Thread(target=w.heartbeat, daemon=True).start()
for _ in range(500):
    if events.PIPE.getvalue():
        break
    time.sleep(0.01)
out["stats"] = json.loads(events.PIPE.getvalue().splitlines()[0])
print(json.dumps(out))
`, pkg, class)
			stdout := runPython(t, py, script)
			// Bytes answered on each connection (none when edge closed it).
			var got struct {
				Open    int            `json:"open"`
				Shut    int            `json:"shut"`
				BigShut int            `json:"big_shut"`
				MedShut int            `json:"medium_shut"`
				Ran     []string       `json:"ran"`
				Polls   int            `json:"polls"`
				Skipped int            `json:"skipped"`
				Stats   map[string]any `json:"stats"`
			}
			if err := json.Unmarshal(stdout, &got); err != nil {
				t.Fatalf("%q: %v", stdout, err)
			}
			if got.Open == 0 {
				t.Errorf("a request on an open connection got no answer")
			}
			if got.Shut != 0 || got.BigShut != 0 || got.MedShut != 0 {
				t.Errorf("requests edge had shut down got %d, %d and %d bytes back (small, big, medium body), want none", got.Shut, got.BigShut, got.MedShut)
			}
			if want := []string{"/open"}; !slices.Equal(got.Ran, want) {
				t.Errorf("the app ran %q, want %q", got.Ran, want)
			}
			// A request up to GONE_MARKED comes with GONE: only the big
			// body needs a poll.
			if got.Polls != 1 {
				t.Errorf("the worker polled %d times, want 1 (the big body alone)", got.Polls)
			}
			if got.Skipped != 4 {
				t.Errorf("skipped = %d, want 4", got.Skipped)
			}
			want := map[string]any{"event": "stats", "served": 1.0, "busy": 0.0, "skipped": 4.0}
			if !reflect.DeepEqual(got.Stats, want) {
				t.Errorf("stats event %v, want %v", got.Stats, want)
			}
		})
	}
}

// A request whose big body edge stops sending once the app has begun (its
// client went away) fails as a broken connection, and the worker still
// counts it as ended: no request left busy, none left in flight for the
// hung-request watch to find later and end the process for.
func TestPythonBodyCutAccounted(t *testing.T) {
	py := interpreter(t)
	pkg := pyPackage(t)
	script := fmt.Sprintf(`
import json, os, socket, sys
sys.path.insert(0, %q)
from edged_worker import base, sync, wsgi
`+pyFrame+`
edge, ours = socket.socketpair()
def app(environ, start_response):
    edge.shutdown(socket.SHUT_WR)  # the rest of the body never comes
    start_response("200 OK", [])
    return [b"ok"]
w = sync.Worker(app, {"threads": 1}, None, wsgi.Handler)
edge.sendall(request_frame("POST", "/", 2 << 20) + b"x" * 1000)
fd = ours.detach()
w.serve(base.FdConn(fd))
os.close(fd)
print(json.dumps({"busy": w.busy, "served": w.served, "inflight": len(w.inflight)}))
`, pkg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, "-c", script).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("%v:\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var got struct{ Busy, Served, Inflight int }
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	if want := (struct{ Busy, Served, Inflight int }{0, 1, 0}); got != want {
		t.Errorf("after the request: %+v, want %+v", got, want)
	}
}

// pyPackage writes the edged_worker package into a directory of its own
// and returns the directory, for scripts that import it from files.
func pyPackage(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	if err := python.WriteTo(dir); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// pyFrame is Python for the scripts that drive a worker by hand:
// request_frame(method, path, body_len) is the request frame edge sends
// (the body follows in one frame of body_len bytes; only its header is
// made here).
const pyFrame = `
from edged_worker import frames as _f
def request_frame(method, path, body_len=0):
    strs = [method, "http", "HTTP/1.1", path, path, "", "", "localhost", "80", "127.0.0.1", "", ""]
    payload = _f.REQUEST_FIXED.pack(0, body_len, 0, 0, 0) + "\0".join(strs).encode("latin-1")
    out = _f.header(_f.REQUEST, len(payload)) + payload
    if body_len:
        out += _f.chunk_header(body_len)
    return out
`

// runPython runs script with py (for at most 30s) and returns what it
// printed; a failure shows what it said on stderr.
func runPython(t *testing.T, py, script string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stdout, err := exec.CommandContext(ctx, py, "-c", script).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("%v:\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	return stdout
}

// The gevent class keeps its server greenlets and hands each the next
// request when it is free (a new greenlet costs this Python an mmap and a
// munmap of its frame stack, the dearest system calls of a request), and
// runs each request in a context of its own, as a new greenlet had: a
// ContextVar set by one request is unset in the next. Its connections are
// served through gevent's loop: a body that comes after the frame, in
// pieces, is waited for without blocking the other greenlets.
func TestGeventReusesGreenlets(t *testing.T) {
	needGevent(t)
	script := fmt.Sprintf(`
from gevent import monkey
monkey.patch_all()
import contextvars, io, json, os, socket, sys
import gevent
sys.path.insert(0, %[1]q)
from edged_worker import events, wsgi
from edged_worker.gevent import Worker
`+pyFrame+`
cv = contextvars.ContextVar("cv", default="unset")
seen = []
def app(environ, start_response):
    body = environ["wsgi.input"].read()
    seen.append([id(gevent.getcurrent()), cv.get(), len(body)])
    cv.set("set by " + environ["PATH_INFO"])
    start_response("200 OK", [])
    return [b"ok"]
path = os.path.join(%[2]q, "q.sock")
lsock = socket.socket(socket.AF_UNIX)
lsock.bind(path)
lsock.listen(16)
w = Worker(app, {"connections": 10}, lsock, wsgi.Handler)
ticks = []
def ticker():
    while True:
        ticks.append(1)
        gevent.sleep(0.01)
def ask(p, body=b"", pause=0):
    c = socket.socket(socket.AF_UNIX)
    c.connect(path)
    c.sendall(request_frame("POST", p, len(body)))
    if body:
        half = len(body) // 2
        c.sendall(body[:half])
        gevent.sleep(pause)
        c.sendall(body[half:])
    answer = b""
    while True:
        b = c.recv(1 << 16)
        if not b:
            break
        answer += b
    c.close()
    return len(answer)
def client():
    sizes = [ask("/%%d" %% i) for i in range(3)]
    before = len(ticks)
    sizes.append(ask("/slow-body", b"x" * 1000, 0.3))
    print(json.dumps({"seen": seen, "sizes": sizes, "ticks": len(ticks) - before}), flush=True)
    w.stop()
gevent.spawn(ticker)
gevent.spawn(client)
events.PIPE = io.StringIO()
w.run()
`, pyPackage(t), t.TempDir())
	stdout := runPython(t, interpreter(t), script)
	var got struct {
		Seen  [][3]any `json:"seen"`
		Sizes []int    `json:"sizes"`
		Ticks int      `json:"ticks"`
	}
	if err := json.Unmarshal(stdout, &got); err != nil {
		t.Fatalf("%q: %v", stdout, err)
	}
	if len(got.Seen) != 4 {
		t.Fatalf("the app ran %d times, want 4: %v", len(got.Seen), got.Seen)
	}
	for i, s := range got.Seen {
		if s[0] != got.Seen[0][0] {
			t.Errorf("request %d ran in greenlet %v, the first in %v: want the same greenlet, kept", i, s[0], got.Seen[0][0])
		}
		if s[1] != "unset" {
			t.Errorf("request %d saw the ContextVar %q, want it unset (each request in a context of its own)", i, s[1])
		}
	}
	if body := got.Seen[3][2]; body != 1000.0 {
		t.Errorf("the body sent in two parts reached the app as %v bytes, want 1000", body)
	}
	for i, n := range got.Sizes {
		if n == 0 {
			t.Errorf("request %d got no answer", i)
		}
	}
	// 0.3 s waiting for the body's second part: the ticker, another
	// greenlet, ran meanwhile (about 30 ticks) unless the read blocked.
	if got.Ticks < 10 {
		t.Errorf("the ticker greenlet ran %d times while a body was awaited for 0.3 s, want about 30: the read blocked the worker", got.Ticks)
	}
}

// The protocol's numbers are defined once on each side: pkg/wire for
// edged, edged_worker/frames.py for the worker. They must be the same.
func TestProtocolConstants(t *testing.T) {
	py := interpreter(t)
	script := fmt.Sprintf(`
import json, sys
sys.path.insert(0, %q)
from edged_worker import appkey, base, frames, wsgi
print(json.dumps({
    "key_present": appkey.PRESENT, "key_weak": appkey.WEAK, "key_django": appkey.DJANGO_UNSAFE,
    "key_sources": [appkey.SOURCES[i] for i in range(len(appkey.SOURCES))],
    "key_word": appkey.word(dict(source="literal", fingerprint=5, weak=True, debug=True)),
    "version": frames.VERSION, "request": frames.REQUEST, "body": frames.BODY, "head": frames.HEAD,
    "end": frames.END, "abort": frames.ABORT, "expired": frames.EXPIRED,
    "gone": frames.GONE, "header_len": frames.HEADER_LEN, "request_fixed": frames.REQUEST_FIXED.size,
    "max_head": frames.MAX_HEAD, "max_chunk": frames.MAX_CHUNK, "stats_len": frames.STATS_LEN,
    "fields": list(frames.REQUEST_FIELDS), "memory_body": [frames.MEMORY_BODY],
    "rid_mark": wsgi.RID_MARK,
}))
`, pyPackage(t))
	out, err := exec.Command(py, "-c", script).Output()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var got struct {
		Version, Request, Body, Head, End, Abort, Expired, Gone int
		HeaderLen                                               int `json:"header_len"`
		RequestFixed                                            int `json:"request_fixed"`
		MaxHead                                                 int `json:"max_head"`
		MaxChunk                                                int `json:"max_chunk"`
		StatsLen                                                int `json:"stats_len"`
		Fields                                                  []string
		MemoryBody                                              []int    `json:"memory_body"`
		RIDMark                                                 string   `json:"rid_mark"`
		KeyPresent                                              int      `json:"key_present"`
		KeyWeak                                                 int      `json:"key_weak"`
		KeyDjango                                               int      `json:"key_django"`
		KeySources                                              []string `json:"key_sources"`
		KeyWord                                                 int      `json:"key_word"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	for _, c := range []struct {
		name     string
		py, want int
	}{
		{"VERSION", got.Version, wire.Version},
		{"REQUEST", got.Request, int(wire.TypeRequest)},
		{"BODY", got.Body, int(wire.TypeBody)},
		{"HEAD", got.Head, int(wire.TypeHead)},
		{"END", got.End, int(wire.TypeEnd)},
		{"ABORT", got.Abort, int(wire.TypeAbort)},
		{"EXPIRED", got.Expired, int(wire.TypeExpired)},
		{"GONE", got.Gone, int(wire.TypeGone)},
		{"HEADER_LEN", got.HeaderLen, wire.HeaderLen},
		{"REQUEST_FIXED", got.RequestFixed, wire.RequestFixed},
		{"MAX_HEAD", got.MaxHead, wire.MaxHead},
		{"MAX_CHUNK", got.MaxChunk, wire.MaxChunk},
		{"STATS_LEN", got.StatsLen, wire.StatsLen},
		{"MEMORY_BODY", got.MemoryBody[0], upstream.FullBodyAt},
		{"appkey.PRESENT", got.KeyPresent, int(wire.KeyPresent)},
		{"appkey.WEAK", got.KeyWeak, int(wire.KeyWeak)},
		{"appkey.DJANGO_UNSAFE", got.KeyDjango, int(wire.KeyDjangoUnsafe)},
	} {
		if c.py != c.want {
			t.Errorf("frames %s = %d, edged's is %d", c.name, c.py, c.want)
		}
	}
	if !slices.Equal(got.Fields, wire.RequestFields) {
		t.Errorf("REQUEST_FIELDS = %q, edged's are %q", got.Fields, wire.RequestFields)
	}
	if got.RIDMark != ridMark {
		t.Errorf("RID_MARK = %q, workerd's is %q", got.RIDMark, ridMark)
	}
	for i, name := range got.KeySources {
		if s := wire.KeySource(i).String(); s != name {
			t.Errorf("appkey source %d is %q, edged's is %q", i, name, s)
		}
	}
	if k := wire.KeyReport(got.KeyWord); k.Source() != wire.KeyLiteral || k.Print() != 5 || k&wire.KeyWeak == 0 || k&wire.KeyDjangoUnsafe == 0 {
		t.Errorf("appkey.word() = %#x: edged reads source %v, print %d", got.KeyWord, k.Source(), k.Print())
	}
}

// The environ the Python side builds from a neutral request is the one
// pkg/wire says it builds (Incoming.Environ, which the edge's tests check
// the edge's requests against): the two are held to each other here.
func TestPythonEnvironMatchesWire(t *testing.T) {
	p := startWorker(t, "testapp:app", config.ClassSync, zerolog.WarnLevel, nil)
	tests := []struct {
		name    string
		fields  map[string]string
		headers []string
	}{
		{"plain", map[string]string{"method": "GET", "path": "/", "target": "/"}, nil},
		{"root split", map[string]string{"method": "GET", "path": "/app/x", "root": "/app", "target": "/app/x?q", "query": "q"}, nil},
		{"root alone", map[string]string{"method": "GET", "path": "/app", "root": "/app"}, nil},
		{"root only as a segment", map[string]string{"method": "GET", "path": "/application", "root": "/app"}, nil},
		{"everything", map[string]string{
			"method": "POST", "scheme": "https", "protocol": "HTTP/2.0", "target": "/caf%C3%A9?a=%20", "path": "/caf\xc3\xa9",
			"query": "a=%20", "server_name": "example.com", "server_port": "443", "client_addr": "2001:db8::1", "client_port": "5000",
			"request_id": "r1",
		}, []string{
			"Host", "example.com", "Content-Type", "text/plain", "Content-Length", "3", "X-Forwarded-For", "2001:db8::1",
			"Accept", "a", "Accept", "b", "Cookie", "a=1", "Cookie", "b=2", "X-Caf", "caf\xe9", "X-Empty", "",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f wire.Request
			for _, name := range wire.RequestFields {
				f.Add(tt.fields[name])
			}
			for _, h := range append([]string{"X-Test", "echo"}, tt.headers...) {
				f.Add(h)
			}
			body := []byte{}
			if tt.fields["method"] == "POST" {
				body = []byte("abc")
			}
			frame := append(f.Frame(int64(len(body)), time.Time{}), body...)
			in, err := wire.ReadRequest(bufio.NewReader(bytes.NewReader(frame)), 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			want := in.Environ()

			conn, err := net.Dial("unix", p.sock)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			conn.Write(frame)
			resp, err := readResponse(conn)
			if err != nil {
				t.Fatal(err)
			}
			var got echoed
			resp.json(t, &got)
			for k, v := range got.Environ {
				got.Environ[k] = latin1(t, v)
			}
			for k, v := range want {
				if got.Environ[k] != v {
					t.Errorf("environ[%q] = %q, wire says %q", k, got.Environ[k], v)
				}
			}
			for k := range got.Environ {
				if _, ok := want[k]; !ok && (strings.HasPrefix(k, "HTTP_") || strings.HasPrefix(k, "CONTENT_") || k == "REMOTE_PORT") {
					t.Errorf("environ[%q] = %q, which wire does not have", k, got.Environ[k])
				}
			}
		})
	}
}

// A worker still answers the frames of the version before (an edged of
// the last release, which runs until an upgrade restarts it after the
// workers): a request as that edged sent it, with the environ built, and
// the answer in its frames.
func TestPythonLegacyFrames(t *testing.T) {
	p := startWorker(t, "testapp:app", config.ClassSync, zerolog.WarnLevel, nil)
	v1 := func(env []string, body []byte, deadline time.Time) []byte {
		e := strings.Join(env, "\x00")
		b := binary.LittleEndian.AppendUint32(nil, uint32(len(e)))
		b = binary.LittleEndian.AppendUint64(b, uint64(len(body)))
		var dl uint64
		if !deadline.IsZero() {
			dl = uint64(deadline.UnixNano())
		}
		b = binary.LittleEndian.AppendUint64(b, dl)
		return append(append(b, e...), body...)
	}
	// readV1 reads an answer in version 1's frames: the head's fields,
	// the body, and the end marker.
	readV1 := func(frame []byte) ([]string, string, uint32) {
		conn, err := net.Dial("unix", p.sock)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		conn.Write(frame)
		r := bufio.NewReader(conn)
		u32 := func() uint32 {
			var b [4]byte
			if _, err := io.ReadFull(r, b[:]); err != nil {
				t.Fatalf("reading a length: %v", err)
			}
			return binary.LittleEndian.Uint32(b[:])
		}
		n := u32()
		if n >= 0xFFFFFFF0 {
			return nil, "", n
		}
		h := make([]byte, n)
		io.ReadFull(r, h)
		var body []byte
		for {
			n := u32()
			if n == 0 || n >= 0xFFFFFFF0 {
				if n == 0xFFFFFFFD {
					io.CopyN(io.Discard, r, 32)
				}
				return strings.Split(string(h), "\x00"), string(body), n
			}
			chunk := make([]byte, n)
			io.ReadFull(r, chunk)
			body = append(body, chunk...)
		}
	}
	env := []string{"REQUEST_METHOD", "POST", "SCRIPT_NAME", "", "PATH_INFO", "/old", "QUERY_STRING", "", "SERVER_NAME", "x",
		"SERVER_PORT", "80", "SERVER_PROTOCOL", "HTTP/1.1", "REMOTE_ADDR", "10.0.0.1", "wsgi.url_scheme", "http",
		"CONTENT_LENGTH", "3", "HTTP_X_TEST", "echo"}
	head, body, end := readV1(v1(env, []byte("abc"), time.Time{}))
	if len(head) < 2 || head[0] != "1" || head[1] != "200 OK" || end != 0xFFFFFFFD {
		t.Fatalf("answer head %q, end %#x; want worker 1, 200 OK, measured", head, end)
	}
	var got echoed
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("%q: %v", body, err)
	}
	if got.Environ["PATH_INFO"] != "/old" || got.Environ["REMOTE_ADDR"] != "10.0.0.1" || got.BodyLen != 3 {
		t.Errorf("the app saw %v and %d bytes of body", got.Environ, got.BodyLen)
	}
	if _, _, end := readV1(v1(env, nil, time.Now().Add(-time.Second))); end != 0xFFFFFFFE {
		t.Errorf("a request past its deadline: %#x, want the expired marker", end)
	}
	// And the frames of this version still work on the same worker.
	if resp := dial(t, p.sock).do(t, environ("echo"), nil); resp.Status != 200 {
		t.Errorf("a request of this version after: %d", resp.Status)
	}
}
