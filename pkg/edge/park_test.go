package edge

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// An idle keep-alive connection leaves net/http after parkAfter and
// comes back when its client speaks: the same socket answers the next
// request, pipelined ones too; its idle timeout still ends it, and so
// does the server's stop.
func TestPark(t *testing.T) {
	old := parkAfter
	parkAfter = 50 * time.Millisecond
	t.Cleanup(func() { parkAfter = old })
	const get = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
	dir := socketDir(t)
	startWorker(t, dir, "1", replyOK)
	s := newServer(t, dir, "limits.idle_timeout", `"1500ms"`)
	c, _ := connect(t, s)
	br := bufio.NewReader(c)
	ask := func(n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("response %d: %v", i+1, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Close {
				t.Fatalf("response %d: %d, close %v", i+1, resp.StatusCode, resp.Close)
			}
		}
	}
	waitParked := func(want int) {
		t.Helper()
		for end := time.Now().Add(2 * time.Second); s.parked() != want; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("%d connections parked, want %d", s.parked(), want)
			}
		}
	}

	io.WriteString(c, get)
	ask(1)
	waitParked(1)
	// Back: the same socket, one request, then two at once.
	io.WriteString(c, get)
	ask(1)
	waitParked(1)
	io.WriteString(c, get+get)
	ask(2)

	// Parked, it still ends at limits.idle_timeout.
	waitParked(1)
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(br); err != nil || len(b) != 0 {
		t.Fatalf("after the idle timeout: %q, %v; want the connection closed", b, err)
	}
	if took := time.Since(start); took < time.Second || took > 3*time.Second {
		t.Errorf("closed %v after its last answer, want about limits.idle_timeout (1.5s)", took)
	}
	waitParked(0)
}

// A client that sends its requests back to back is never parked, and a
// connection that never sent a request is parked and ended at the
// header timeout.
func TestParkBusyAndSilent(t *testing.T) {
	old := parkAfter
	parkAfter = 200 * time.Millisecond
	t.Cleanup(func() { parkAfter = old })
	dir := socketDir(t)
	startWorker(t, dir, "1", replyOK)
	s := newServer(t, dir, "limits.header_timeout", `"1s"`)
	addr := serve(t, s)
	busy, _ := net.Dial("tcp", addr)
	defer busy.Close()
	br := bufio.NewReader(busy)
	for i := 0; i < 20; i++ {
		io.WriteString(busy, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if s.parked() != 0 {
			t.Fatalf("a busy connection was parked")
		}
		time.Sleep(20 * time.Millisecond)
	}
	silent, _ := net.Dial("tcp", addr)
	defer silent.Close()
	silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	b, err := io.ReadAll(silent)
	if err != nil || len(b) != 0 {
		t.Fatalf("silent connection: %q, %v", b, err)
	}
	if took := time.Since(start); took < 800*time.Millisecond || took > 3*time.Second {
		t.Errorf("a silent connection closed after %v, want about limits.header_timeout (1s)", took)
	}
}
