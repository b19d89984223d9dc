package edge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edged/edged/pkg/config"
	"github.com/edged/edged/pkg/sd"
	"github.com/edged/edged/pkg/wire"
	"github.com/rs/zerolog"
)

// wreq is one request frame as the fake worker read it.
type wreq struct {
	// env is the WSGI environ the Python worker would build from in.
	env      map[string]string
	in       *wire.Incoming
	body     []byte
	deadline time.Time // zero: none
	conn     int       // which connection of the worker carried it, from 1
	err      error
}

// fconn is the fake worker's side of one connection from the edge.
type fconn struct {
	net.Conn
	r      *bufio.Reader
	worker string
	// done is closed when the test ends, to release blocked handlers.
	done <-chan struct{}
}

// serveFunc answers one request; the connection is closed after it.
type serveFunc func(c *fconn, req *wreq)

// queue is the listening socket the fake workers of one directory share,
// as every workerd shares workerd.socket.
type queue struct {
	ln    *net.UnixListener
	path  string
	users int // workers still taking from it; the last one closes it
}

var (
	queuesMu sync.Mutex
	queues   = map[string]*queue{}
)

// listenQueue binds dir's worker socket with the given listen backlog.
func listenQueue(t *testing.T, dir string, backlog int) *queue {
	t.Helper()
	return listenQueueAt(t, filepath.Join(dir, config.QueueSocket), backlog)
}

// listenQueueAt binds the worker socket at path (a site's).
func listenQueueAt(t *testing.T, path string, backlog int) *queue {
	t.Helper()
	queuesMu.Lock()
	defer queuesMu.Unlock()
	if q := queues[path]; q != nil {
		return q
	}
	f, err := sd.ListenUnix(path, backlog)
	if err != nil {
		t.Fatalf("listen %s: %v", path, err)
	}
	defer f.Close()
	l, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	q := &queue{ln: l.(*net.UnixListener), path: path}
	q.ln.SetUnlinkOnClose(true)
	queues[path] = q
	t.Cleanup(func() {
		queuesMu.Lock()
		delete(queues, path)
		queuesMu.Unlock()
		q.ln.Close()
	})
	return q
}

// fakeWorker stands in for a sync Python worker: it takes one connection
// at a time off its directory's queue socket, reads the request frame and
// answers with whatever serve writes.
type fakeWorker struct {
	t     *testing.T
	name  string
	q     *queue
	serve serveFunc

	// done is closed when the worker stops, to release blocked handlers.
	done chan struct{}

	mu   sync.Mutex
	reqs []*wreq
	cur  net.Conn

	conns atomic.Int32 // connections that carried a request (pings aside)
	wg    sync.WaitGroup
}

// startWorker starts worker name on dir's queue socket (binding it, with
// a roomy backlog, if no worker has yet) and serves each request with
// serve.
func startWorker(t *testing.T, dir, name string, serve serveFunc) *fakeWorker {
	t.Helper()
	return startWorkerAt(t, filepath.Join(dir, config.QueueSocket), name, serve)
}

// startWorkerAt is startWorker on the worker socket at path (a site's).
func startWorkerAt(t *testing.T, path, name string, serve serveFunc) *fakeWorker {
	t.Helper()
	q := listenQueueAt(t, path, 64)
	queuesMu.Lock()
	q.users++
	queuesMu.Unlock()
	fw := &fakeWorker{t: t, name: name, q: q, serve: serve, done: make(chan struct{})}
	fw.wg.Add(1)
	go fw.accept()
	t.Cleanup(fw.stop)
	return fw
}

func (fw *fakeWorker) accept() {
	defer fw.wg.Done()
	for {
		c, err := fw.q.ln.Accept()
		if err != nil {
			return
		}
		select {
		case <-fw.done:
			// Stopped while waiting: the connection is another worker's
			// to take, which a real worker guarantees by not asking.
			c.Close()
			return
		default:
		}
		fw.mu.Lock()
		fw.cur = c
		fw.mu.Unlock()
		fw.handle(c)
	}
}

func (fw *fakeWorker) handle(c net.Conn) {
	defer c.Close()
	fc := &fconn{Conn: c, r: bufio.NewReader(c), worker: fw.name, done: fw.done}
	req, err := readRequest(fc.r)
	if err != nil {
		return // the edge closed the connection
	}
	req.conn = int(fw.conns.Add(1))
	fw.mu.Lock()
	fw.reqs = append(fw.reqs, req)
	fw.mu.Unlock()
	fw.serve(fc, req)
}

// stop ends the worker: it takes nothing more, its request in hand is
// cut off, and the last worker of a directory closes the socket.
func (fw *fakeWorker) stop() {
	select {
	case <-fw.done:
		return
	default:
		close(fw.done)
	}
	queuesMu.Lock()
	fw.q.users--
	last := fw.q.users == 0
	queuesMu.Unlock()
	if last {
		fw.q.ln.Close()
	}
	fw.mu.Lock()
	if fw.cur != nil {
		fw.cur.Close()
	}
	fw.mu.Unlock()
	if last {
		fw.wg.Wait()
	}
}

// requests returns the requests read so far.
func (fw *fakeWorker) requests() []*wreq {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	return append([]*wreq(nil), fw.reqs...)
}

// only returns the one request the worker got, failing the test otherwise.
func (fw *fakeWorker) only(t *testing.T) *wreq {
	t.Helper()
	rs := fw.requests()
	if len(rs) != 1 {
		t.Fatalf("the worker got %d requests, want 1", len(rs))
	}
	if rs[0].err != nil {
		t.Fatalf("bad request frame: %v", rs[0].err)
	}
	return rs[0]
}

// readRequest reads one request frame and its body. A malformed frame
// is reported in req.err, so that the test sees it, unless the input
// ended first.
func readRequest(r *bufio.Reader) (*wreq, error) {
	in, err := wire.ReadRequest(r, 1<<30)
	if err != nil {
		if errors.Is(err, wire.ErrFrame) {
			return &wreq{err: err, env: map[string]string{}}, nil
		}
		return nil, err
	}
	return &wreq{env: in.Environ(), in: in, body: in.Body, deadline: in.Deadline}, nil
}

// Response frames.

// headFrame is worker 1's frame for a status line and name, value...
// pairs.
func headFrame(status string, fields ...string) []byte {
	return headFrameFrom("1", status, fields...)
}

// headFrameFrom is the head frame as worker sends it.
func headFrameFrom(worker, status string, fields ...string) []byte {
	return wire.AppendHead(nil, worker, status, fields...)
}

func chunkFrame(b []byte) []byte { return wire.AppendBody(nil, b) }

var (
	endFrame     = wire.AppendEnd(nil)
	abortFrame   = wire.AppendHeader(nil, wire.TypeAbort, 0, 0)
	expiredFrame = wire.AppendHeader(nil, wire.TypeExpired, 0, 0)
)

// respond writes a whole response: head, the body in chunks, end.
func (c *fconn) respond(status string, fields []string, chunks ...[]byte) error {
	out := headFrameFrom(c.worker, status, fields...)
	for _, ch := range chunks {
		if len(ch) > 0 {
			out = append(out, chunkFrame(ch)...)
		}
	}
	out = append(out, endFrame...)
	_, err := c.Write(out)
	return err
}

// replyOK answers every request with 200 and a short body.
func replyOK(c *fconn, _ *wreq) {
	c.respond("200 OK", []string{"Content-Type", "text/plain"}, []byte("hello"))
}

// socketDir returns a directory for worker sockets with a path short
// enough for a Unix socket address.
func socketDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if len(dir) > 90 {
		d, err := os.MkdirTemp("", "edge")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		dir = d
	}
	return dir
}

// testConfig builds a config as config.Parse would from a file; kv are
// dotted keys and TOML values that replace or add to the defaults below.
func testConfig(t *testing.T, dir string, kv ...string) *config.Config {
	t.Helper()
	if len(kv)%2 != 0 {
		t.Fatalf("testConfig: odd key/value list %q", kv)
	}
	keys := map[string]string{
		"listen.http":           `["127.0.0.1:0"]`,
		"app.module":            `"x:app"`,
		"app.directory":         fmt.Sprintf("%q", dir),
		"app.timeout":           `"5s"`,
		"pool.socket_dir":       fmt.Sprintf("%q", dir),
		"pool.graceful_timeout": `"2s"`,
		"limits.queue_timeout":  `"10s"`,
	}
	for i := 0; i < len(kv); i += 2 {
		keys[kv[i]] = kv[i+1]
	}
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, k := range names {
		fmt.Fprintf(&b, "%s = %s\n", k, keys[k])
	}
	cfg, err := config.Parse("test.toml", dir, []byte(b.String()))
	if err != nil {
		t.Fatalf("config.Parse:\n%s\n%v", b.String(), err)
	}
	return cfg
}

// newServer builds a Server that sends requests to dir's queue socket.
func newServer(t *testing.T, dir string, kv ...string) *Server {
	t.Helper()
	return newServerLog(t, dir, zerolog.Nop(), kv...)
}

func newServerLog(t *testing.T, dir string, log zerolog.Logger, kv ...string) *Server {
	t.Helper()
	s, err := New(testConfig(t, dir, kv...), log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// serve runs s on a real listener until the test ends and returns the
// listener's address.
func serve(t *testing.T, s *Server) string {
	t.Helper()
	return serveAll(t, s).HTTP[0].Addr().String()
}

// serveAll is serve for a test that needs more than the first HTTP
// listener.
func serveAll(t *testing.T, s *Server) *Listeners {
	t.Helper()
	ls, err := Listen(s.Config())
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx, ls) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return after its context ended")
		}
		ls.Close()
	})
	return ls
}

// wait receives from ch or fails after a while.
func wait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
	panic("unreachable")
}
