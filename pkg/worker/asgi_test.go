package worker

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edged/edged/pkg/config"
	"github.com/edged/edged/pkg/wire"
	"github.com/rs/zerolog"
)

// asgiFiles is the ASGI test app for a worker's directory.
func asgiFiles(tb testing.TB) map[string]string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "asgiapp.py"))
	if err != nil {
		tb.Fatal(err)
	}
	return map[string]string{"asgiapp.py": string(b)}
}

type asgiEcho struct {
	Scope struct {
		Type        string            `json:"type"`
		ASGI        map[string]string `json:"asgi"`
		HTTPVersion string            `json:"http_version"`
		Method      string            `json:"method"`
		Scheme      string            `json:"scheme"`
		Path        string            `json:"path"`
		RawPath     string            `json:"raw_path"`
		QueryString string            `json:"query_string"`
		RootPath    string            `json:"root_path"`
		Headers     [][2]string       `json:"headers"`
		Client      []any             `json:"client"`
		Server      []any             `json:"server"`
	} `json:"scope"`
	State      map[string]string `json:"state"`
	Extensions map[string]any    `json:"extensions"`
	BodyLen    int               `json:"body_len"`
	BodySHA256 string            `json:"body_sha256"`
	Events     int               `json:"events"`
}

func TestASGIScope(t *testing.T) {
	p := startWorker(t, "asgiapp:app", config.ClassASGI, zerolog.WarnLevel, asgiFiles(t))
	c := dial(t, p.sock)
	resp := c.do(t, environ("echo",
		"REQUEST_METHOD", "POST",
		"SCRIPT_NAME", "/app",
		"PATH_INFO", "/caf\xc3\xa9/x",
		"QUERY_STRING", "a=%20",
		"RAW_URI", "/app/caf%C3%A9/x?a=%20",
		"REMOTE_PORT", "5000",
		"HTTP_COOKIE", "a=1",
		"CONTENT_TYPE", "text/plain",
		"CONTENT_LENGTH", "5",
	), []byte("hello"))
	var got asgiEcho
	resp.json(t, &got)
	s := got.Scope
	if s.Type != "http" || s.ASGI["version"] != "3.0" || s.HTTPVersion != "1.1" || s.Method != "POST" || s.Scheme != "http" {
		t.Errorf("scope basics: %+v", s)
	}
	if s.Path != "/app/café/x" || s.RawPath != "/app/caf%C3%A9/x" || s.QueryString != "a=%20" || s.RootPath != "/app" {
		t.Errorf("scope paths: path %q raw_path %q query %q root_path %q", s.Path, s.RawPath, s.QueryString, s.RootPath)
	}
	if len(s.Client) != 2 || s.Client[0] != "127.0.0.1" || s.Client[1] != 5000.0 || len(s.Server) != 2 || s.Server[0] != "localhost" || s.Server[1] != 80.0 {
		t.Errorf("client %v, server %v", s.Client, s.Server)
	}
	want := map[string]string{"cookie": "a=1", "content-type": "text/plain", "content-length": "5", "x-test": "echo"}
	for _, h := range s.Headers {
		if v, ok := want[h[0]]; ok && v == h[1] {
			delete(want, h[0])
		}
	}
	if len(want) != 0 {
		t.Errorf("headers %q lack %v (names lower case, values as sent)", s.Headers, want)
	}
	if got.BodyLen != 5 || got.Events != 1 {
		t.Errorf("body: %d bytes in %d events, want 5 in 1", got.BodyLen, got.Events)
	}
	if got.State["started_by"] != "lifespan" {
		t.Errorf("state %v: the lifespan's state is not in the scope", got.State)
	}
	if got.Extensions != nil {
		t.Errorf("extensions %v on a plain-HTTP request", got.Extensions)
	}
}

// A body over the size read whole comes as several http.request events,
// all of it.
func TestASGIBigBody(t *testing.T) {
	p := startWorker(t, "asgiapp:app", config.ClassASGI, zerolog.WarnLevel, asgiFiles(t))
	body := body3MB()
	resp := dial(t, p.sock).do(t, environ("echo", "REQUEST_METHOD", "PUT"), body)
	var got asgiEcho
	resp.json(t, &got)
	if got.BodyLen != len(body) || got.BodySHA256 != sha(body) || got.Events < 2 {
		t.Errorf("got %d bytes (sha %s) in %d events, want %d bytes (sha %s) in several", got.BodyLen, got.BodySHA256, got.Events, len(body), sha(body))
	}
}

func TestASGIResponses(t *testing.T) {
	p := startWorker(t, "asgiapp:app", config.ClassASGI, zerolog.WarnLevel, asgiFiles(t))
	c := dial(t, p.sock)
	tests := []struct {
		mode    string
		status  int
		body    string
		bodyErr error
	}{
		{"stream", 200, "data: 0\n\ndata: 1\n\ndata: 2\n\n", nil},
		{"raise_early", 500, "Internal Server Error\n", nil},
		{"raise_mid", 200, strings.Repeat("a", 300<<10), wire.ErrAborted},
		{"no_response", 500, "Internal Server Error\n", nil},
		{"bad_header", 500, "Internal Server Error\n", nil},
		{"nothing_such", 404, `{"mode": "nothing_such"}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			resp, err := c.roundTrip(environ(tt.mode), nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != tt.status || string(resp.body) != tt.body || !errors.Is(resp.err, tt.bodyErr) {
				t.Errorf("got %d %.60q (body error %v), want %d %.60q (%v)", resp.Status, resp.body, resp.err, tt.status, tt.body, tt.bodyErr)
			}
		})
	}
	// And the worker goes on serving.
	if resp := c.do(t, environ("echo"), nil); resp.Status != 200 {
		t.Errorf("after the failures: %d", resp.Status)
	}
}

// Requests run at once on one worker: ten that each wait 300 ms take
// about 300 ms together, not 3 s.
func TestASGIConcurrent(t *testing.T) {
	p := startWorker(t, "asgiapp:app", config.ClassASGI, zerolog.WarnLevel, asgiFiles(t))
	c := dial(t, p.sock)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan string, 10)
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.roundTrip(environ("sleep", "HTTP_X_SECONDS", "0.3"), nil)
			if err != nil || resp.Status != 200 {
				errs <- "a sleeping request failed"
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("ten 300 ms requests took %v on one worker: they did not run at once", took)
	}
}

// An ASGI 2 class is called as ASGI 2 asks: made from the scope, then
// awaited with receive and send.
func TestASGI2(t *testing.T) {
	p := startWorker(t, "asgiapp:Legacy", config.ClassASGI, zerolog.WarnLevel, asgiFiles(t))
	resp := dial(t, p.sock).do(t, environ("echo", "PATH_INFO", "/two"), nil)
	if resp.Status != 200 || !bytes.Contains(resp.body, []byte(`"asgi2": true`)) || !bytes.Contains(resp.body, []byte(`"/two"`)) {
		t.Errorf("got %d %q", resp.Status, resp.body)
	}
}

// An app that does not speak the lifespan protocol is served all the
// same; one whose startup fails never takes a request, and says why as a
// failed import does; the wrong kind of app for the class is refused
// with what to set.
func TestASGIRefusals(t *testing.T) {
	p := startWorker(t, "asgiapp:no_lifespan", config.ClassASGI, zerolog.Disabled, asgiFiles(t))
	if resp := dial(t, p.sock).do(t, environ("echo"), nil); resp.Status != 200 {
		t.Errorf("an app without lifespan: %d", resp.Status)
	}
	for _, tt := range []struct {
		module, class, summary string
	}{
		{"asgiapp:failing_startup", config.ClassASGI, "the app's lifespan startup failed: no database at db:5432"},
		{"asgiapp:app", config.ClassSync, `asgiapp:app is an ASGI app: set pool.class = "asgi"`},
		{"asgiapp:Legacy", config.ClassGevent, `asgiapp:Legacy is an ASGI app: set pool.class = "asgi"`},
		{"asgiapp:wsgi_app", config.ClassASGI, `asgiapp:wsgi_app is a WSGI app (or not an async callable): set pool.class = "sync", "threads" or "gevent"`},
	} {
		t.Run(tt.module+"/"+tt.class, func(t *testing.T) {
			if tt.class == config.ClassGevent {
				needGevent(t)
			}
			p := runWorker(t, tt.module, tt.class, zerolog.Disabled, asgiFiles(t))
			var err error
			select {
			case err = <-p.done:
				p.done <- err
			case <-time.After(30 * time.Second):
				t.Fatalf("Run did not return within 30s")
			}
			var ie *ImportError
			if !errors.As(err, &ie) || !strings.HasPrefix(ie.Summary, tt.summary) {
				t.Errorf("Run returned %v, want an ImportError saying %q", err, tt.summary)
			}
		})
	}
}

// A task past app.timeout is ended alone, with where it waited in the
// log; the worker's other requests go on and the process stays. A loop
// blocked by a call that never awaits cannot end one task: the process
// ends, as a thread's would.
func TestASGIHung(t *testing.T) {
	var logs logBuffer
	p := listenWorker(t, "asgiapp:app", config.ClassASGI, zerolog.InfoLevel, asgiFiles(t))
	p.cfg.App.Timeout = config.Duration(time.Second) // hung after 2 s
	p.log = zerolog.New(&logs)
	p.run(t)
	p.waitReady(t)
	c := dial(t, p.sock)
	hung := make(chan response, 1)
	go func() {
		resp, _ := c.roundTrip(environ("sleep", "HTTP_X_SECONDS", "30"), nil)
		hung <- resp
	}()
	time.Sleep(200 * time.Millisecond)
	// Meanwhile others are served.
	for i := 0; i < 3; i++ {
		if resp := c.do(t, environ("sleep", "HTTP_X_SECONDS", "0.5"), nil); resp.Status != 200 {
			t.Errorf("a request beside the hung one: %d", resp.Status)
		}
	}
	select {
	case resp := <-hung:
		if resp.Status != 500 {
			t.Errorf("the hung request ended with %d, want the 500 a cancelled task gets", resp.Status)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the hung request was not ended")
	}
	evs := logs.waitEvents(t, "request hung past app.timeout: it alone is ended here, the others go on", 1)
	if len(evs) != 1 || !strings.Contains(evs[0]["traceback"].(string), "asyncio.sleep") && !strings.Contains(evs[0]["traceback"].(string), "in app") {
		t.Errorf("hung events %v, want one with where the task waited", evs)
	}
	if n := p.w.Restarts(); n != 0 {
		t.Errorf("Restarts() = %d: the process ended for one task", n)
	}
	if resp := c.do(t, environ("echo"), nil); resp.Status != 200 {
		t.Errorf("after: %d", resp.Status)
	}

	// A blocked loop: the process ends and a new one serves.
	go c.roundTrip(environ("block", "HTTP_X_SECONDS", "30"), nil)
	deadline := time.Now().Add(20 * time.Second)
	for p.w.Restarts() == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if p.w.Restarts() == 0 {
		t.Fatalf("a loop blocked past app.timeout did not end the process")
	}
	if evs := logs.waitEvents(t, "request hung past app.timeout: the python process stops here, and a new one starts", 1); len(evs) != 1 {
		t.Errorf("hung events for the blocked loop: %v", evs)
	}
}

// The app hears http.disconnect when edged hangs up on a request (its
// client went away) while the app waits for it.
func TestASGIDisconnect(t *testing.T) {
	p := startWorker(t, "asgiapp:app", config.ClassASGI, zerolog.WarnLevel, asgiFiles(t))
	conn, err := net.Dial("unix", p.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	conn.Write(requestFrame(environ("disconnect"), 0, time.Time{}))
	time.Sleep(200 * time.Millisecond) // the app is waiting in receive()
	conn.(*net.UnixConn).CloseWrite()
	resp, err := readResponse(conn)
	if err != nil || resp.Status != 200 || !bytes.Contains(resp.body, []byte(`"then": "http.disconnect"`)) {
		t.Errorf("got %d %q %v, want the app to have heard http.disconnect", resp.Status, resp.body, err)
	}
}

// A stopping worker closes its WebSockets with 1012 (service restart):
// the client is told through edged, and the app hears the disconnect.
func TestASGIStopClosesWebSockets(t *testing.T) {
	p := startWorker(t, "asgiapp:ws_echo", config.ClassASGI, zerolog.WarnLevel, asgiFiles(t))
	conn, err := net.Dial("unix", p.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	var f wire.Request
	fields, headers := neutral(environ("echo"))
	for _, name := range wire.RequestFields {
		f.Add(fields[name])
	}
	for _, h := range headers {
		f.Add(h)
	}
	f.OpenSession()
	conn.Write(f.Frame(0, time.Time{}))
	r := bufio.NewReader(conn)
	var h wire.Head
	if ok, err := wire.ReadOpen(r, &h); !ok || err != nil {
		t.Fatalf("the session was not accepted: %v %v %+v", ok, err, h)
	}
	conn.Write(wire.AppendMessage(nil, wire.Message{Text: true, Data: []byte("ping")}))
	var m wire.Message
	if err := wire.ReadMessage(r, &m, 1<<20); err != nil || string(m.Data) != "ping" {
		t.Fatalf("echo: %q %v", m.Data, err)
	}
	p.stop()
	if err := wire.ReadMessage(r, &m, 1<<20); err != nil || !m.Close || m.Code != 1012 {
		t.Errorf("on stop: %+v %v, want a close with 1012", m, err)
	}
}

// A request that expired in the queue, whose edged end has gone by the
// time the worker answers, still gives its room back: a worker with room
// for two takes the next requests after many such.
func TestASGIExpiredGone(t *testing.T) {
	p := listenWorker(t, "asgiapp:app", config.ClassASGI, zerolog.WarnLevel, asgiFiles(t))
	p.cfg.Pool.Connections = 2
	p.run(t)
	p.waitReady(t)
	for i := 0; i < 10; i++ {
		conn, err := net.Dial("unix", p.sock)
		if err != nil {
			t.Fatal(err)
		}
		conn.Write(requestFrame(environ("echo"), 0, time.Now().Add(-time.Second)))
		conn.Close()
	}
	done := make(chan response, 1)
	go func() {
		resp, _ := dial(t, p.sock).roundTrip(environ("echo"), nil)
		done <- resp
	}()
	select {
	case resp := <-done:
		if resp.Status != 200 {
			t.Errorf("after the expired requests: %d", resp.Status)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the worker took no request after the expired ones: their room was not given back")
	}
}
