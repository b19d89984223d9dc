package edge

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edged/edged/pkg/config"
	"github.com/edged/edged/pkg/fleet"
)

// healthOf asks s's /healthz handler.
func healthOf(s *Server) (int, string) {
	rec := httptest.NewRecorder()
	s.serveHealth(rec, httptest.NewRequest("GET", "/healthz", nil))
	return rec.Code, rec.Body.String()
}

func TestHealth(t *testing.T) {
	t.Run("a worker takes a probe", func(t *testing.T) {
		dir := socketDir(t)
		startWorker(t, dir, "1", replyOK)
		s := newServer(t, dir)
		if code, body := healthOf(s); code != 200 || !strings.HasPrefix(body, "up") {
			t.Errorf("healthz = %d %q, want 200 up", code, body)
		}
		if got := s.agentWord(); got != "ready up 100%" {
			t.Errorf("agent says %q, want ready up 100%%", got)
		}
	})
	t.Run("nothing listens on the worker socket", func(t *testing.T) {
		s := newServer(t, socketDir(t))
		code, body := healthOf(s)
		if code != 503 || !strings.Contains(body, "no worker: nothing listens") {
			t.Errorf("healthz = %d %q, want 503 saying no worker listens", code, body)
		}
		if got := s.agentWord(); got != "down" {
			t.Errorf("agent says %q, want down", got)
		}
	})
	t.Run("no worker takes from the queue", func(t *testing.T) {
		dir := socketDir(t)
		listenQueueAt(t, filepath.Join(dir, config.QueueSocket), 8) // never accepted
		s := newServer(t, dir)
		start := time.Now()
		code, body := healthOf(s)
		if code != 503 || !strings.Contains(body, "no worker took a probe") {
			t.Errorf("healthz = %d %q, want 503 saying no worker took the probe", code, body)
		}
		if d := time.Since(start); d > 3*fleet.ProbeTimeout {
			t.Errorf("healthz took %s, want about %s", d, fleet.ProbeTimeout)
		}
	})
	t.Run("a worker answered lately: no probe", func(t *testing.T) {
		dir := socketDir(t)
		fw := startWorker(t, dir, "1", replyOK)
		s := newServer(t, dir)
		c, _ := connect(t, s)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		readAnswer(t, c)
		before := fw.conns.Load()
		if code, _ := healthOf(s); code != 200 {
			t.Errorf("healthz = %d after an answer, want 200", code)
		}
		if fw.conns.Load() != before {
			t.Errorf("health probed the workers although one had just answered")
		}
	})
}

// readAnswer reads one answer from c.
func readAnswer(t *testing.T, c net.Conn) *http.Response {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	io.ReadAll(resp.Body)
	return resp
}

// TestDrain: a draining edged says so to balancers, closes its idle
// keep-alive connections and ends the others with their next answer, and
// still serves; undrained, it keeps connections again.
func TestDrain(t *testing.T) {
	dir := socketDir(t)
	startWorker(t, dir, "1", replyOK)
	s := newServer(t, dir)
	addr := serve(t, s)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	ask := func() *http.Response {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		io.ReadAll(resp.Body)
		return resp
	}
	if resp := ask(); resp.Close {
		t.Fatalf("answer before the drain closes its connection")
	}
	if !s.Drain() || s.Drain() {
		t.Errorf("Drain = false, or true twice")
	}
	if code, body := healthOf(s); code != 503 || !strings.Contains(body, "draining") {
		t.Errorf("healthz while draining = %d %q, want 503 draining", code, body)
	}
	if got := s.agentWord(); got != "drain" {
		t.Errorf("agent says %q while draining, want drain", got)
	}
	if !strings.HasPrefix(s.status(), "draining") {
		t.Errorf("status line %q does not say draining", s.status())
	}
	// The idle keep-alive connection was closed by the drain; a new one
	// is served, and its answer ends it.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("the idle connection is still open after the drain (read %d, %v)", n, err)
	}
	c1, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c, br = c1, bufio.NewReader(c1)
	if resp := ask(); resp.StatusCode != 200 || !resp.Close {
		t.Errorf("answer while draining: %s, close=%v; want 200 and Connection: close", resp.Status, resp.Close)
	}
	if !s.Undrain() {
		t.Errorf("Undrain = false while draining")
	}
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c, br = c2, bufio.NewReader(c2)
	if resp := ask(); resp.Close {
		t.Errorf("answer after undrain closes its connection")
	}
	if code, _ := healthOf(s); code != 200 {
		t.Errorf("healthz after undrain = %d, want 200", code)
	}
}

// TestDrainBeforeStop: with cluster.drain, a stop drains that long before
// the listeners close, and requests are served meanwhile.
func TestDrainBeforeStop(t *testing.T) {
	dir := socketDir(t)
	startWorker(t, dir, "1", replyOK)
	s := newServer(t, dir, "cluster.drain", `"1s"`)
	addr, cancel, done := serveUntil(t, s)
	waitServing(t, addr)
	start := time.Now()
	cancel()
	time.Sleep(300 * time.Millisecond)
	if !s.Draining() {
		t.Errorf("not draining after the stop began")
	}
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("a request during the drain failed: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !resp.Close {
		t.Errorf("answer during the drain: %s close=%v, want 200 and Connection: close", resp.Status, resp.Close)
	}
	if err := wait(t, done, "Serve to return"); err != nil {
		t.Errorf("Serve: %v", err)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("Serve returned %s after the stop, before cluster.drain (1s)", d)
	}
}

// waitServing waits until addr answers.
func waitServing(t *testing.T, addr string) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if resp, err := http.Get("http://" + addr + "/"); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s does not answer", addr)
}

// TestAgentAndControl: the agent check answers one line a connection;
// the control socket drains and undrains.
func TestAgentAndControl(t *testing.T) {
	dir := socketDir(t)
	startWorker(t, dir, "1", replyOK)
	s := newServer(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.serveAgent(ctx, l)
	agent := func() string {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(c)
		return string(b)
	}
	if got := agent(); got != "ready up 100%\n" {
		t.Errorf("agent check = %q, want \"ready up 100%%\\n\"", got)
	}

	t.Setenv("RUNTIME_DIRECTORY", t.TempDir())
	if err := listenControl(ctx, make(chan chan error), s, s.log); err != nil {
		t.Fatal(err)
	}
	control := func(req string) string {
		c, err := net.Dial("unix", controlPath())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, req+"\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(c)
		return strings.TrimSpace(string(b))
	}
	for _, tt := range []struct{ req, want, agent string }{
		{"state", "ok serving", "ready up 100%\n"},
		{"drain", "ok draining for 0s", "drain\n"},
		{"undrain", "ok serving", "ready up 100%\n"},
		{"flood", "error: unknown request (reload, drain, undrain, state)", "ready up 100%\n"},
	} {
		if got := control(tt.req); got != tt.want {
			t.Errorf("control %q = %q, want %q", tt.req, got, tt.want)
		}
		if got := agent(); got != tt.agent {
			t.Errorf("after %q the agent check says %q, want %q", tt.req, got, tt.agent)
		}
	}
}

// serveUntil serves s on its config's addresses until cancel is called;
// done gets Serve's error.
func serveUntil(t *testing.T, s *Server) (addr string, cancel func(), done <-chan error) {
	t.Helper()
	ls, err := Listen(s.Config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ls.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx, ls) }()
	return ls.HTTP[0].Addr().String(), cancel, errc
}
