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

// Every limit the README says a reload changes holds at its new value
// for the next connection or request, without a restart. Each case starts
// with generous limits, reloads to a tight one, and shows it holds.
func TestReloadedLimitsHold(t *testing.T) {
	type env struct {
		t    *testing.T
		s    *Server
		addr string
	}
	// dial opens a connection to the server.
	dial := func(e env) net.Conn {
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			e.t.Fatal(err)
		}
		e.t.Cleanup(func() { c.Close() })
		return c
	}
	// status sends raw on a new connection and returns the answer's status
	// and how long it took.
	status := func(e env, raw string) (int, time.Duration) {
		c := dial(e)
		start := time.Now()
		c.Write([]byte(raw))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			e.t.Fatalf("no answer: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode, time.Since(start)
	}
	get := "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
	tests := []struct {
		key, value string
		serve      serveFunc
		check      func(e env)
	}{
		{"limits.max_header", `"1k"`, replyOK, func(e env) {
			if code, _ := status(e, "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: "+strings.Repeat("a", 4000)+"\r\n\r\n"); code != 431 {
				e.t.Errorf("a 4000-byte head: %d, want 431", code)
			}
		}},
		{"limits.header_timeout", `"300ms"`, replyOK, func(e env) {
			if code, took := status(e, "GET / HTTP/1.1\r\n"); code != 408 || took > 3*time.Second {
				e.t.Errorf("a stalled head: %d after %v, want 408 within about 300ms", code, took)
			}
		}},
		{"limits.idle_timeout", `"300ms"`, replyOK, func(e env) {
			c := dial(e)
			c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				e.t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			start := time.Now()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := br.ReadByte(); err != io.EOF || time.Since(start) > 3*time.Second {
				e.t.Errorf("an idle keep-alive connection: %v after %v, want closed within about 300ms", err, time.Since(start))
			}
		}},
		{"limits.max_body", `"1k"`, replyOK, func(e env) {
			if code, _ := status(e, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n"+strings.Repeat("a", 2000)); code != 413 {
				e.t.Errorf("a 2000-byte body: %d, want 413", code)
			}
		}},
		{"limits.body_timeout", `"300ms"`, replyOK, func(e env) {
			if code, took := status(e, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab"); code != 408 || took > 3*time.Second {
				e.t.Errorf("a stalled body: %d after %v, want 408 within about 300ms", code, took)
			}
		}},
		{"limits.queue_timeout", `"300ms"`, nil, func(e env) {
			if code, took := status(e, get); code != 503 || took > 3*time.Second {
				e.t.Errorf("no worker takes it: %d after %v, want 503 within about 300ms", code, took)
			}
		}},
		{"app.timeout", `"300ms"`, func(c *fconn, _ *wreq) { <-c.done }, func(e env) {
			if code, took := status(e, get); code != 504 || took > 3*time.Second {
				e.t.Errorf("an app that never answers: %d after %v, want 504 within about 300ms", code, took)
			}
		}},
		{"limits.rate", `"1r/m"`, replyOK, func(e env) {
			status(e, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			if code, _ := status(e, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); code != 429 {
				e.t.Errorf("a second request at once: %d, want 429", code)
			}
		}},
		{"limits.connections_per_client", "1", func(c *fconn, r *wreq) {
			if r.env["PATH_INFO"] == "/slow" {
				time.Sleep(time.Second)
			}
			replyOK(c, r)
		}, func(e env) {
			slow := dial(e)
			slow.Write([]byte(get))
			time.Sleep(200 * time.Millisecond)
			if code, _ := status(e, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); code != 503 {
				e.t.Errorf("a second request while one is in hand: %d, want 503", code)
			}
		}},
		{"limits.send_timeout", `"300ms"`, answer("200 OK", []string{"Content-Type", "text/plain"}, make([]byte, 64<<20)), func(e env) {
			c := dial(e)
			c.(*net.TCPConn).SetReadBuffer(4096)
			c.Write([]byte(get))
			time.Sleep(1500 * time.Millisecond) // take nothing
			// What the kernel had taken still comes; the rest never does.
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, _ := io.Copy(io.Discard, c)
			if n >= 64<<20 {
				e.t.Errorf("a client that took nothing for 1.5s still got the whole answer (%d bytes), want it cut off", n)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			dir := socketDir(t)
			if tt.serve != nil {
				startWorker(t, dir, "1", tt.serve)
			} else {
				listenQueue(t, dir, 16) // no worker takes anything
			}
			generous := []string{"limits.max_header", `"8k"`, "limits.header_timeout", `"60s"`, "limits.idle_timeout", `"60s"`,
				"limits.max_body", `"1m"`, "limits.body_timeout", `"60s"`, "limits.queue_timeout", `"60s"`, "app.timeout", `"60s"`,
				"limits.send_timeout", `"60s"`, "buffers.response_memory", `"128m"`, "buffers.response_max", `"128m"`}
			s := newServer(t, dir, generous...)
			e := env{t: t, s: s, addr: serve(t, s)}
			if err := s.Reload(testConfig(t, dir, append(generous, tt.key, tt.value)...)); err != nil {
				t.Fatalf("Reload with %s = %s: %v", tt.key, tt.value, err)
			}
			tt.check(e)
		})
	}
}
