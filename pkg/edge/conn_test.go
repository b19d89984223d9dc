package edge

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// readAll reads from c until it is closed, or fails the test after a while.
func readAll(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading until the server closes: %v (got %q so far)", err, b)
	}
	return string(b)
}

// connect serves s on a real listener and opens a client connection to
// it; both end with the test. It returns the connection and the address.
func connect(t *testing.T, s *Server) (net.Conn, string) {
	t.Helper()
	addr := serve(t, s)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, addr
}

func TestTrackedConn(t *testing.T) {
	const get = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
	tests := []struct {
		name string
		// first, when set, is a whole request answered before send.
		first string
		send  string
		want  string // what the server sends after first's response
	}{
		{"partial request head", "", "GET / HTTP/1.1\r\nHost: exa", response408},
		{"partial request line", "", "GE", response408},
		{"nothing sent", "", "", ""},
		{"idle after a request", get, "", ""},
		{"partial second request head", get, "GET /again HTTP/1.1\r\n", response408},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := socketDir(t)
			startWorker(t, dir, "1", replyOK)
			s := newServer(t, dir,
				"limits.header_timeout", `"300ms"`,
				"limits.idle_timeout", `"300ms"`)
			c, _ := connect(t, s)
			br := bufio.NewReader(c)
			if tt.first != "" {
				if _, err := io.WriteString(c, tt.first); err != nil {
					t.Fatal(err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("first response: %v", err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("first response: status got %d, want 200", resp.StatusCode)
				}
			}
			if tt.send != "" {
				if _, err := io.WriteString(c, tt.send); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			b, err := io.ReadAll(br)
			took := time.Since(start)
			if err != nil {
				t.Fatalf("reading until the server closes: %v (got %q so far)", err, b)
			}
			if got := string(b); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if took > 3*time.Second {
				t.Errorf("closed after %v, want about the 300ms timeout", took)
			}
		})
	}
}

// A request the handler turns down while its body is unread answers once
// and closes within limits.body_timeout, even when the client stalls:
// net/http's reading of the rest must not hold the connection for ever.
func TestRejectedBodyCloses(t *testing.T) {
	tests := []struct {
		name string
		send string
		want string // status line
	}{
		{"stalled body", "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 10\r\n\r\nabc", "HTTP/1.1 408 Request Timeout"},
		{"declared over max_body, nothing sent", "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 2048\r\n\r\n", "HTTP/1.1 413 Request Entity Too Large"},
		{"chunked over max_body, then stalled", "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + strings.Repeat("x", 0x800) + "\r\n", "HTTP/1.1 413 Request Entity Too Large"},
		{"bad chunk, then stalled", "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "HTTP/1.1 400 Bad Request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := socketDir(t)
			fw := startWorker(t, dir, "1", replyOK)
			s := newServer(t, dir,
				"limits.header_timeout", `"300ms"`,
				"limits.body_timeout", `"300ms"`,
				"limits.max_body", `"1k"`)
			c, _ := connect(t, s)
			io.WriteString(c, tt.send)
			start := time.Now()
			got := readAll(t, c)
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("closed after %v, want within about body_timeout (300ms)", took)
			}
			if !strings.HasPrefix(got, tt.want+"\r\n") {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if n := strings.Count(got, "HTTP/1.1 "); n != 1 {
				t.Errorf("got %d responses, want 1: %q", n, got)
			}
			if n := len(fw.requests()); n != 0 {
				t.Errorf("the worker got %d requests, want 0", n)
			}
		})
	}
}

// A request served over a real listener: the tracked connection passes
// requests through untouched, and keeps the connection alive.
func TestTrackedConnServes(t *testing.T) {
	dir := socketDir(t)
	fw := startWorker(t, dir, "1", replyOK)
	s := newServer(t, dir, "limits.header_timeout", `"300ms"`)
	c, addr := connect(t, s)
	br := bufio.NewReader(c)
	for i := 0; i < 3; i++ {
		io.WriteString(c, "GET /n HTTP/1.1\r\nHost: example.com:8080\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "hello" {
			t.Errorf("request %d: got %d %q, want 200 \"hello\"", i+1, resp.StatusCode, b)
		}
	}
	rs := fw.requests()
	if len(rs) != 3 {
		t.Fatalf("the worker got %d requests, want 3", len(rs))
	}
	_, port, _ := net.SplitHostPort(addr)
	want := map[string]string{"REMOTE_ADDR": "127.0.0.1", "SERVER_NAME": "example.com", "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1"}
	for k, v := range want {
		if got := rs[0].env[k]; got != v {
			t.Errorf("%s: got %q, want %q", k, got, v)
		}
	}
	if rs[0].env["REMOTE_PORT"] == "" || rs[0].env["REMOTE_PORT"] == port {
		t.Errorf("REMOTE_PORT: got %q, want the client's port", rs[0].env["REMOTE_PORT"])
	}
}

// countingConn counts the writes that reach the socket.
type countingConn struct {
	net.Conn
	writes atomic.Int32
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// An answer of a few KiB goes out in one write, where net/http alone
// makes two; a handler that streams still gets each piece out at once.
func TestGatheredWrites(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan *countingConn, 1)
	body := strings.Repeat("x", 4096)
	srv := &http.Server{
		ConnContext: connContext,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			leave, _, _, _ := enterHandler(r)
			defer leave()
			if r.URL.Path == "/stream" {
				io.WriteString(w, "first")
				http.NewResponseController(w).Flush()
				flushClient(r)
				time.Sleep(time.Second)
				io.WriteString(w, "second")
				return
			}
			w.Header().Set("Content-Length", "4096")
			io.CopyN(w, strings.NewReader(body), 4096) // as http.ServeContent does
		}),
	}
	go srv.Serve(listenerFunc{l, func(c net.Conn) net.Conn {
		cc := &countingConn{Conn: c}
		conns <- cc
		return &trackedConn{Conn: cc, scan: headScanner{max: 8192}}
	}})
	t.Cleanup(func() { srv.Close() })

	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cc := <-conns
	br := bufio.NewReader(c)
	for i := range 3 {
		io.WriteString(c, "GET /file HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if len(b) != 4096 {
			t.Fatalf("body of %d bytes, want 4096", len(b))
		}
		if got := cc.writes.Load(); got != int32(i+1) {
			t.Errorf("after %d answers of 4 KiB: %d writes, want %d", i+1, got, i+1)
		}
	}

	io.WriteString(c, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the streamed answer's head did not come before the handler's pause: %v", err)
	}
	first := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "first" {
		t.Fatalf("the first piece did not come before the handler's pause: %q, %v", first, err)
	}
}

// listenerFunc wraps each accepted connection with wrap.
type listenerFunc struct {
	net.Listener
	wrap func(net.Conn) net.Conn
}

func (l listenerFunc) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.wrap(c), nil
}

// A connection handed to a WebSocket (sendDirect) sends each write at
// once, reads without waiting for a write, and judges no HTTP heads in
// what it reads: a client's frames full of blank lines must not pile up
// verdicts no one reads.
func TestSendDirect(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	tc := &trackedConn{Conn: a, scan: headScanner{max: 8192}}
	tc.sendDirect()
	go func() {
		io.WriteString(b, strings.Repeat("GET / HTTP/1.1\r\nHost: x\r\n\r\n", 50))
	}()
	buf := make([]byte, 4096)
	got := 0
	for got < 50*len("GET / HTTP/1.1\r\nHost: x\r\n\r\n") {
		n, err := tc.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got += n
	}
	tc.mu.Lock()
	verdicts := len(tc.scan.verdicts)
	tc.mu.Unlock()
	if verdicts != 0 {
		t.Errorf("%d verdicts kept after the hand-over, want none", verdicts)
	}
	// A small write goes out at once, not held for the next read.
	done := make(chan string, 1)
	go func() {
		p := make([]byte, 5)
		io.ReadFull(b, p)
		done <- string(p)
	}()
	tc.Write([]byte("hello"))
	select {
	case s := <-done:
		if s != "hello" {
			t.Errorf("the client read %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a small write was held back")
	}
}
