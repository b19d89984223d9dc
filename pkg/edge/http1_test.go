package edge

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edged/edged/pkg/config"
	"github.com/rs/zerolog"
)

// trackedListener hands out the connections of l as the pipeline does.
type trackedListener struct{ net.Listener }

func (l trackedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	lim := func() config.Limits {
		return config.Limits{MaxHeader: 64 << 10, HeaderTimeout: config.Duration(5 * time.Second), IdleTimeout: config.Duration(5 * time.Second)}
	}
	return newTrackedConn(c, nil, lim, nil), nil
}

// serveH1 serves h on a loopback address with edged's loop (own) or with
// net/http alone, over the same trackedConns, until the test ends.
func serveH1(t *testing.T, h http.Handler, own bool) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := trackedListener{l}
	inner := h
	h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The connection's phases, as Server.ServeHTTP marks them.
		leave, _, _, _ := enterHandler(r)
		defer leave()
		inner.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: h, ConnContext: connContext, DisableGeneralOptionsHandler: true,
		ErrorLog: newErrorLog(zerolog.Nop())}
	if own {
		h1 := newH1Server(h, zerolog.Nop(), l.Addr())
		go h1.serve(tl)
		go srv.Serve(h1.handoff)
		t.Cleanup(func() { l.Close(); h1.handoff.Close(); h1.Shutdown(t.Context()) })
	} else {
		go srv.Serve(tl)
		t.Cleanup(func() { srv.Close() })
	}
	return l.Addr().String()
}

// exchange sends raw on a new connection and reads answers until the
// connection closes or goes quiet; it returns them, parsed, and whether
// the connection stayed open.
func exchangeRaw(t *testing.T, addr, raw string, answers int, head bool) ([]*http.Response, []string, bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var resps []*http.Response
	var bodies []string
	method := "GET"
	if head {
		method = "HEAD"
	}
	for range answers {
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("reading answer %d to %q: %v", len(resps)+1, raw, err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("reading body of answer %d: %v", len(resps)+1, err)
		}
		resp.Header.Del("Date")
		resps = append(resps, resp)
		bodies = append(bodies, string(b))
	}
	// Open: a request more is answered.
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, "GET /again HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return resps, bodies, false
	}
	_, err = http.ReadResponse(br, nil)
	return resps, bodies, err == nil
}

// TestH1AnswersAsNetHTTP runs the same handlers under edged's loop and
// under net/http's server and compares what a client gets: status,
// fields (but Date), body, framing and whether the connection goes on.
func TestH1AnswersAsNetHTTP(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "page.html")
	os.WriteFile(file, bytes.Repeat([]byte("<p>hello</p>\n"), 1000), 0o644)
	big := strings.Repeat("x", 5000)
	tests := []struct {
		name    string
		handler http.HandlerFunc
		raw     string
		answers int
		head    bool
	}{
		{"small body sniffed and measured", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<html>hi</html>") }, "", 1, false},
		{"large body chunked", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, big) }, "", 1, false},
		{"large body in pieces", func(w http.ResponseWriter, r *http.Request) {
			for range 5 {
				io.WriteString(w, big[:1500])
			}
		}, "", 1, false},
		{"declared length", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "5")
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "hello")
		}, "", 1, false},
		{"declared length not met", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "hello")
		}, "", 0, false},
		{"bad declared length", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "five")
			io.WriteString(w, "hello")
		}, "", 1, false},
		{"no content", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "5")
			w.WriteHeader(http.StatusNoContent)
		}, "", 1, false},
		{"not modified", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Header().Set("Etag", `"x"`)
			w.WriteHeader(http.StatusNotModified)
		}, "", 1, false},
		{"nothing written", func(w http.ResponseWriter, r *http.Request) {}, "", 1, false},
		{"status only", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }, "", 1, false},
		{"odd status", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(599) }, "", 1, false},
		{"fields changed after the status", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Before", "1")
			w.WriteHeader(http.StatusAccepted)
			w.Header().Set("X-After", "1")
			io.WriteString(w, "ok")
		}, "", 1, false},
		{"field values with newlines and spaces", func(w http.ResponseWriter, r *http.Request) {
			w.Header()["X-Odd"] = []string{" a\r\nb ", "c\nd"}
			w.Header()["Bad Name"] = []string{"dropped"}
			io.WriteString(w, "ok")
		}, "", 1, false},
		{"handler asks to close", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			io.WriteString(w, "bye")
		}, "", 1, false},
		{"handler keeps alive a closing client", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "keep-alive")
			io.WriteString(w, "bye")
		}, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 1, false},
		{"client asks to close", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "bye") },
			"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 1, false},
		{"flushed", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "one")
			w.(http.Flusher).Flush()
			io.WriteString(w, "two")
		}, "", 1, false},
		{"flushed with a length", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "6")
			io.WriteString(w, "one")
			http.NewResponseController(w).Flush()
			io.WriteString(w, "two")
		}, "", 1, false},
		{"head with a body written", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<html>hi</html>") },
			"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", 1, true},
		{"head with nothing written", func(w http.ResponseWriter, r *http.Request) {},
			"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", 1, true},
		{"served file", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, file) }, "", 1, false},
		{"served file range", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, file) },
			"GET / HTTP/1.1\r\nHost: x\r\nRange: bytes=10-19\r\n\r\n", 1, false},
		{"error page", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "nope", http.StatusForbidden) }, "", 1, false},
		{"small body left unread", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") },
			"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 1, false},
		{"body read", func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%d %q", r.ContentLength, b)
		}, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 1, false},
		{"pipelined", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) },
			"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n", 3, false},
		{"HTTP/1.0 (net/http's)", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) },
			"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1, false},
		{"chunked body (net/http's)", func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%q", b)
		}, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 1, false},
		{"bad head (net/http's)", func(w http.ResponseWriter, r *http.Request) {},
			"GET / HTTP/1.1\r\nHost: x\r\nBad Field: y\r\n\r\n", 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := tt.raw
			if raw == "" {
				raw = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
			}
			var got [2]struct {
				resps  []*http.Response
				bodies []string
				open   bool
			}
			for i, own := range []bool{false, true} {
				addr := serveH1(t, tt.handler, own)
				g := &got[i]
				g.resps, g.bodies, g.open = exchangeRaw(t, addr, raw, tt.answers, tt.head)
			}
			want, have := got[0], got[1]
			if have.open != want.open {
				t.Errorf("connection open after the answers: loop %v, net/http %v", have.open, want.open)
			}
			for i := range want.resps {
				w, h := want.resps[i], have.resps[i]
				if h.Status != w.Status || h.Proto != w.Proto {
					t.Errorf("answer %d: loop %q %q, net/http %q %q", i, h.Proto, h.Status, w.Proto, w.Status)
				}
				if !reflect.DeepEqual(h.Header, w.Header) {
					t.Errorf("answer %d fields:\nloop     %v\nnet/http %v", i, h.Header, w.Header)
				}
				if !reflect.DeepEqual(h.TransferEncoding, w.TransferEncoding) || h.ContentLength != w.ContentLength || h.Close != w.Close {
					t.Errorf("answer %d framing: loop %v %d close=%v, net/http %v %d close=%v", i,
						h.TransferEncoding, h.ContentLength, h.Close, w.TransferEncoding, w.ContentLength, w.Close)
				}
				if have.bodies[i] != want.bodies[i] {
					t.Errorf("answer %d body: loop %.80q, net/http %.80q", i, have.bodies[i], want.bodies[i])
				}
			}
		})
	}
}

// TestH1TakesPlainRequests checks which requests the loop serves itself
// and which it leaves to net/http: a handler sees which served it.
func TestH1TakesPlainRequests(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, own := w.(*h1Response)
		fmt.Fprint(w, own)
	})
	addr := serveH1(t, h, true)
	tests := []struct {
		raw  string
		want string
	}{
		{"GET /a?b=c HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n", "true"},
		{"POST /p%20q HTTP/1.1\r\nHost: x:80\r\nContent-Length: 2\r\n\r\nhi", "true"},
		{"GET / HTTP/1.0\r\nHost: x\r\n\r\n", "false"},
		{"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n", "false"},
		{"GET / HTTP/1.1\nHost: x\n\n", "false"},
		{"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + strings.Repeat("a", h1BufSize) + "\r\n\r\n", "false"},
	}
	for _, tt := range tests {
		resps, bodies, _ := exchangeRaw(t, addr, tt.raw, 1, false)
		if resps[0].StatusCode != 200 || bodies[0] != tt.want {
			t.Errorf("%.40q: served by the loop = %s (%s), want %s", tt.raw, bodies[0], resps[0].Status, tt.want)
		}
	}
}

// TestH1WatchesHangUp: while a handler waits (as for a worker), a client
// that goes away ends the request's context.
func TestH1WatchesHangUp(t *testing.T) {
	var ended atomic.Bool
	done := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		tc := r.Context().Value(connKey{}).(*trackedConn)
		tc.phase.Store(phaseHandler)
		tc.watchHangup()
		select {
		case <-r.Context().Done():
			ended.Store(true)
		case <-time.After(5 * time.Second):
		}
	})
	addr := serveH1(t, h, true)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(100 * time.Millisecond)
	c.Close()
	wait(t, done, "the handler")
	if !ended.Load() {
		t.Errorf("the client's hang-up did not end the request's context")
	}
}

// FuzzH1Head: a head the loop takes builds the request net/http builds
// from the same bytes.
func FuzzH1Head(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /a/b?c=d&e HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
		"POST /p%20q?%41 HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\nConnection: keep-alive, close\r\n\r\n",
		"GET /? HTTP/1.1\r\nHost: x\r\ncontent-type:  a b \t\r\n\r\n",
		"GET //x/../y HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
		"DELETE /%zz HTTP/1.1\r\nHost: x\r\nX_Y: z\r\nFoo-bar-BAZ: \x80\xff\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nPragma: no-cache\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		end := headEnd(b)
		if end < 0 {
			return
		}
		c := &h1Conn{tc: &trackedConn{}}
		got := c.parse(b[:end])
		if got == nil {
			return
		}
		want, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b[:end])))
		if err != nil {
			t.Fatalf("the loop took a head net/http refuses (%v): %q", err, b[:end])
		}
		hosts := want.Header.Values("Host")
		want.Header.Del("Host")
		if len(hosts) > 1 {
			t.Fatalf("the loop took a head with %d Host fields", len(hosts))
		}
		for _, x := range []struct {
			what      string
			got, want any
		}{
			{"method", got.Method, want.Method},
			{"URL", got.URL, want.URL},
			{"request URI", got.RequestURI, want.RequestURI},
			{"proto", got.Proto, want.Proto},
			{"header", got.Header, want.Header},
			{"host", got.Host, want.Host},
			{"length", got.ContentLength, want.ContentLength},
			{"close", got.Close, want.Close},
		} {
			if !reflect.DeepEqual(x.got, x.want) {
				t.Errorf("%q: %s: loop %#v, net/http %#v", b[:end], x.what, x.got, x.want)
			}
		}
	})
}

// Regressions found by reading the loop against net/http.
func TestH1Regressions(t *testing.T) {
	t.Run("a body left unread is never read as a request, however slow", func(t *testing.T) {
		old := parkAfter
		parkAfter = 100 * time.Millisecond
		t.Cleanup(func() { parkAfter = old })
		dir := socketDir(t)
		fw := startWorker(t, dir, "1", replyOK)
		s := newServer(t, dir, "limits.max_body", `"16"`, "limits.body_timeout", `"2s"`)
		c, _ := connect(t, s)
		// 36 bytes of body: the first now, the rest (a request's shape)
		// after a pause longer than parkAfter.
		io.WriteString(c, "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 36\r\n\r\nZ")
		time.Sleep(300 * time.Millisecond)
		io.WriteString(c, "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
		out := readAll(t, c)
		if n := strings.Count(out, "HTTP/1.1 "); n != 1 || !strings.HasPrefix(out, "HTTP/1.1 413 ") {
			t.Errorf("got %d answers, want one 413: %q", n, out)
		}
		if n := len(fw.requests()); n != 0 {
			t.Errorf("the app saw %d requests, want none", n)
		}
	})
	t.Run("a request begun while a worker had the last one", func(t *testing.T) {
		dir := socketDir(t)
		startWorker(t, dir, "1", func(c *fconn, r *wreq) {
			time.Sleep(300 * time.Millisecond)
			replyOK(c, r)
		})
		s := newServer(t, dir)
		c, _ := connect(t, s)
		io.WriteString(c, "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n")
		time.Sleep(100 * time.Millisecond)
		io.WriteString(c, "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
		br := bufio.NewReader(c)
		for i := 1; i <= 2; i++ {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("answer %d: %v", i, err)
			}
			io.ReadAll(resp.Body)
			if resp.StatusCode != 200 {
				t.Errorf("answer %d: %s", i, resp.Status)
			}
		}
	})
	t.Run("a pipelined head that stalls gets its 408", func(t *testing.T) {
		dir := socketDir(t)
		startWorker(t, dir, "1", replyOK)
		s := newServer(t, dir, "limits.header_timeout", `"300ms"`)
		c, _ := connect(t, s)
		io.WriteString(c, "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhiGET /y HTTP/1.1\r\nHo")
		start := time.Now()
		out := readAll(t, c)
		if !strings.HasPrefix(out, "HTTP/1.1 200 ") || !strings.HasSuffix(out, response408) {
			t.Errorf("got %q, want a 200 then the 408", out)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("the 408 came after %s, want about the header timeout", d)
		}
	})
	t.Run("a stop does not wait for a connection that sent nothing", func(t *testing.T) {
		dir := socketDir(t)
		startWorker(t, dir, "1", replyOK)
		s := newServer(t, dir, "pool.graceful_timeout", `"10s"`)
		addr, cancel, done := serveUntil(t, s)
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		time.Sleep(200 * time.Millisecond)
		start := time.Now()
		cancel()
		wait(t, done, "Serve to return")
		if d := time.Since(start); d > 700*time.Millisecond {
			t.Errorf("Serve took %s to stop with a connection that sent nothing", d)
		}
	})
}
