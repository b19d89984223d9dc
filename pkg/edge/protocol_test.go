package edge

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawExchange sends raw to a server in front of a worker that answers with
// serve, and returns what came back until the server closed the
// connection (raw must make it close: an error answer, or Connection:
// close on the last request).
func rawExchange(t *testing.T, serve serveFunc, raw string, kv ...string) (string, *fakeWorker) {
	t.Helper()
	dir := socketDir(t)
	fw := startWorker(t, dir, "1", serve)
	s := newServer(t, dir, kv...)
	c, _ := connect(t, s)
	if _, err := c.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	return readAll(t, c), fw
}

// Regression: OPTIONS * was answered inside net/http, outside the
// connection's phases, and the pending read's cancellation then looked
// like a stalled head: an unrequested 408 followed, and every later
// answer on the connection was dropped while the app still ran it.
func TestOptionsStar(t *testing.T) {
	dir := socketDir(t)
	fw := startWorker(t, dir, "1", replyOK)
	s := newServer(t, dir, "limits.header_timeout", `"300ms"`, "limits.idle_timeout", `"5s"`)
	c, _ := connect(t, s)
	br := bufio.NewReader(c)
	c.Write([]byte("OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n"))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("OPTIONS *: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("OPTIONS *: status %d, want 200", resp.StatusCode)
	}
	// Past the header timeout, on the same connection: a POST.
	time.Sleep(500 * time.Millisecond)
	c.Write([]byte("POST /after HTTP/1.1\r\nHost: example.com\r\nContent-Length: 2\r\n\r\nhi"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the POST after OPTIONS *: %v (its answer was dropped)", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("the POST after OPTIONS *: status %d, want 200 (a 408 came instead?)", resp.StatusCode)
	}
	if n := len(fw.requests()); n != 1 {
		t.Errorf("the app saw %d requests, want 1 (OPTIONS * is the server's)", n)
	}
}

// Regression: a request with no Host gave the app an empty SERVER_NAME,
// which PEP 3333 forbids, and an HTTP_HOST the client never sent. Now the
// name is the address the request came in on; HTTP/1.1 without Host is
// still a 400.
func TestNoHost(t *testing.T) {
	tests := []struct {
		name   string
		raw    string
		status string
	}{
		{"HTTP/1.0 without Host", "GET /x HTTP/1.0\r\n\r\n", "200"},
		{"HTTP/1.1 with an empty Host", "GET /x HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n", "200"},
		{"HTTP/1.1 without Host", "GET /x HTTP/1.1\r\nConnection: close\r\n\r\n", "400"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, fw := rawExchange(t, replyOK, tt.raw)
			if !strings.HasPrefix(out, "HTTP/1.1 "+tt.status+" ") && !strings.HasPrefix(out, "HTTP/1.0 "+tt.status+" ") {
				t.Fatalf("got %.80q, want status %s", out, tt.status)
			}
			if tt.status != "200" {
				if n := len(fw.requests()); n != 0 {
					t.Errorf("the app saw %d requests, want none", n)
				}
				return
			}
			env := fw.only(t).env
			if env["SERVER_NAME"] != "127.0.0.1" || env["SERVER_PORT"] == "" {
				t.Errorf("SERVER_NAME %q SERVER_PORT %q, want the listening address 127.0.0.1 and its port", env["SERVER_NAME"], env["SERVER_PORT"])
			}
			for _, k := range []string{"HTTP_HOST", "HTTP_X_FORWARDED_HOST"} {
				if v, ok := env[k]; ok {
					t.Errorf("%s = %q, want it absent: the client sent no host", k, v)
				}
			}
		})
	}
}

// Regression: an interim status as the app's answer became a 1xx
// followed by a made-up 200 (a 101 without an upgrade then left the
// connection open as HTTP/1.1, the request smuggling pattern behind a
// front proxy). It is a 502, and the connection stays usable.
func TestAppInterimStatus(t *testing.T) {
	for _, status := range []string{"100 Continue", "101 Switching Protocols", "103 Early Hints"} {
		t.Run(status, func(t *testing.T) {
			out, _ := rawExchange(t, answer(status, []string{"Upgrade", "websocket", "Connection", "Upgrade"}),
				"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			if got := strings.Count(out, "HTTP/1.1 502 Bad Gateway\r\n"); got != 2 || strings.Contains(out, "HTTP/1.1 1") || strings.Contains(out, " 200 ") {
				t.Errorf("got %q, want two 502s and nothing else", out)
			}
		})
	}
}

// Regression: on HEAD, the app's Content-Length went out whatever it
// held. Only a valid length does.
func TestHeadContentLength(t *testing.T) {
	tests := []struct{ app, want string }{
		{"42", "42"},
		{"0", "0"},
		{"abc", ""},
		{"-1", ""},
		{"1, 2", ""},
		{"+5", ""},
		{" 7", ""},
	}
	for _, tt := range tests {
		t.Run(tt.app, func(t *testing.T) {
			out, _ := rawExchange(t, answer("200 OK", []string{"Content-Length", tt.app, "Content-Type", "text/plain"}),
				"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(out)), &http.Request{Method: "HEAD"})
			if err != nil {
				t.Fatalf("reading %q: %v", out, err)
			}
			if got := resp.Header.Get("Content-Length"); got != tt.want {
				t.Errorf("Content-Length %q, want %q (raw: %q)", got, tt.want, out)
			}
		})
	}
}

// Methods as nginx takes them: CONNECT is refused (edged is no forward
// proxy), a method that is not upper-case letters is a 400; neither
// reaches the app.
func TestMethods(t *testing.T) {
	tests := []struct{ raw, want string }{
		{"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", "405"},
		{"get / HTTP/1.1\r\nHost: x\r\n\r\n", "400"},
		{"G3T / HTTP/1.1\r\nHost: x\r\n\r\n", "400"},
		{"PROPFIND / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "200"},
	}
	for _, tt := range tests {
		t.Run(strings.Fields(tt.raw)[0], func(t *testing.T) {
			out, fw := rawExchange(t, replyOK, tt.raw)
			if !strings.HasPrefix(out, "HTTP/1.1 "+tt.want+" ") {
				t.Fatalf("got %.80q, want %s", out, tt.want)
			}
			want := 0
			if tt.want == "200" {
				want = 1
			}
			if n := len(fw.requests()); n != want {
				t.Errorf("the app saw %d requests, want %d", n, want)
			}
		})
	}
}

// Strict framing, as nginx has it: each case is a 400 (431 for the head
// size), the app never sees the request, and the connection closes.
func TestStrictFraming(t *testing.T) {
	pad := func(n int) string { // a head of exactly n bytes
		pre := "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: "
		return pre + strings.Repeat("a", n-len(pre)-4) + "\r\n\r\n"
	}
	tests := []struct {
		name, raw, want string
		reqs            int
	}{
		{"Content-Length and Transfer-Encoding",
			"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", "400", 0},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-Long: one\r\n two\r\n\r\n", "400", 0},
		{"Transfer-Encoding on HTTP/1.0", "POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "400", 0},
		{"a head of exactly limits.max_header", pad(1024), "200", 1},
		{"a head one byte over limits.max_header", pad(1025), "431", 0},
		{"a head 3 KiB over limits.max_header", pad(4096), "431", 0},
		{"two equal Content-Lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi", "400", 0},
		{"the HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "400", 0},
		{"HTTP/2.0 in a request line (net/http)", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", "505", 0},
		{"a fragment in the target", "GET /a#frag HTTP/1.1\r\nHost: x\r\n\r\n", "400", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, fw := rawExchange(t, replyOK, tt.raw, "limits.max_header", `"1k"`)
			if !strings.HasPrefix(out, "HTTP/1.1 "+tt.want+" ") && !strings.HasPrefix(out, "HTTP/1.0 "+tt.want+" ") {
				t.Fatalf("got %.100q, want %s", out, tt.want)
			}
			if n := len(fw.requests()); n != tt.reqs {
				t.Errorf("the app saw %d requests, want %d", n, tt.reqs)
			}
			if tt.want != "200" && strings.Count(out, "HTTP/1.") != 1 {
				t.Errorf("more than one answer: %q; the connection should close after the first", out)
			}
		})
	}
}

// Pipelined requests, with a fixed and a chunked body among them, are all
// answered in order: the head check follows the framing.
func TestPipelined(t *testing.T) {
	raw := "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n" +
		"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\n\r\nGET /fake HTTP/1.1\r\nHost: y\r\n\r\n" +
		"POST /3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n" +
		"GET /4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	out, fw := rawExchange(t, replyOK, raw)
	if n := strings.Count(out, "HTTP/1.1 200 OK\r\n"); n != 4 {
		t.Errorf("got %d answers of 200, want 4:\n%s", n, out)
	}
	var paths []string
	for _, r := range fw.requests() {
		paths = append(paths, r.env["PATH_INFO"])
	}
	if got := strings.Join(paths, " "); got != "/1 /2 /3 /4" {
		t.Errorf("the app saw %q, want /1 /2 /3 /4", got)
	}
}

// A client that sends Expect: 100-continue gets its 100 before it sends
// the body, over HTTP and over HTTPS: the interim answer is not held back
// with the final one.
func TestExpectContinue(t *testing.T) {
	for _, scheme := range []string{"http", "https"} {
		t.Run(scheme, func(t *testing.T) {
			var c net.Conn
			if scheme == "http" {
				dir := socketDir(t)
				startWorker(t, dir, "1", replyOK)
				c, _ = connect(t, newServer(t, dir))
			} else {
				addr, conf, _ := serveTLS(t, replyOK)
				c = dialTLS(t, addr, conf, "http/1.1")
			}
			io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n")
			br := bufio.NewReader(c)
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			line, err := br.ReadString('\n')
			if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
				t.Fatalf("before the body: %q, %v; want HTTP/1.1 100 Continue", line, err)
			}
			io.WriteString(c, "hello")
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			rest, _ := io.ReadAll(br)
			if !strings.Contains(string(rest), "HTTP/1.1 200 OK\r\n") {
				t.Errorf("after the body: %.100q, want a 200", rest)
			}
		})
	}
}
