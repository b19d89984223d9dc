package edge

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
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
	"github.com/rs/zerolog"
)

// wreq is one request frame as the fake worker read it.
type wreq struct {
	env  map[string]string
	keys []string // in frame order
	body []byte
	conn int // which connection of the worker carried it, from 1
	seq  int // its place on that connection, from 1
	err  error
}

// fconn is the fake worker's side of one connection from the edge.
type fconn struct {
	net.Conn
	r *bufio.Reader
	// done is closed when the test ends, to release blocked handlers.
	done <-chan struct{}
}

// serveFunc answers one request; it returns false to close the connection.
type serveFunc func(c *fconn, req *wreq) bool

// fakeWorker stands in for a Python worker: it listens on DIR/NAME.sock,
// reads request frames and answers with whatever serve writes.
type fakeWorker struct {
	t     *testing.T
	ln    *net.UnixListener
	path  string
	serve serveFunc

	// done is closed when the test ends, to release blocked handlers.
	done   chan struct{}
	closed chan int // connection numbers the worker closed itself

	mu     sync.Mutex
	reqs   []*wreq
	nconns []net.Conn

	conns atomic.Int32 // connections that carried a request (pings aside)
	wg    sync.WaitGroup
}

// startWorker listens on dir/name.sock and serves each request with serve.
func startWorker(t *testing.T, dir, name string, serve serveFunc) *fakeWorker {
	t.Helper()
	path := filepath.Join(dir, name+".sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatalf("listen %s: %v", path, err)
	}
	fw := &fakeWorker{t: t, ln: ln, path: path, serve: serve, done: make(chan struct{}), closed: make(chan int, 100)}
	fw.wg.Add(1)
	go fw.accept()
	t.Cleanup(fw.stop)
	return fw
}

func (fw *fakeWorker) accept() {
	defer fw.wg.Done()
	for {
		c, err := fw.ln.Accept()
		if err != nil {
			return
		}
		fw.mu.Lock()
		fw.nconns = append(fw.nconns, c)
		fw.mu.Unlock()
		fw.wg.Add(1)
		go fw.handle(c)
	}
}

// pong answers a ping, a frame with no environ and no body, as the Python
// worker does.
var pong = append(headFrame("204 No Content"), endFrame...)

func (fw *fakeWorker) handle(c net.Conn) {
	defer fw.wg.Done()
	defer c.Close()
	fc := &fconn{Conn: c, r: bufio.NewReader(c), done: fw.done}
	n := 0 // the connection's number, once it carries a request
	for seq := 1; ; {
		req, err := readRequest(fc.r)
		if err != nil {
			return // the edge closed the connection
		}
		if req == nil {
			if _, err := c.Write(pong); err != nil {
				return
			}
			continue
		}
		if n == 0 {
			n = int(fw.conns.Add(1))
		}
		req.conn, req.seq = n, seq
		seq++
		fw.mu.Lock()
		fw.reqs = append(fw.reqs, req)
		fw.mu.Unlock()
		if !fw.serve(fc, req) {
			c.Close()
			fw.closed <- n
			return
		}
	}
}

// stop closes the listener and every connection, and waits for the
// worker's goroutines.
func (fw *fakeWorker) stop() {
	select {
	case <-fw.done:
	default:
		close(fw.done)
	}
	fw.ln.Close()
	fw.mu.Lock()
	for _, c := range fw.nconns {
		c.Close()
	}
	fw.mu.Unlock()
	fw.wg.Wait()
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

// readRequest reads one request frame: <u32 envLen><u64 bodyLen> env body,
// or returns nil for a ping. A malformed environ is reported in req.err, not as an error, so that the
// test sees it.
func readRequest(r *bufio.Reader) (*wreq, error) {
	var prefix [12]byte
	if _, err := io.ReadFull(r, prefix[:]); err != nil {
		return nil, err
	}
	envLen := binary.LittleEndian.Uint32(prefix[0:4])
	bodyLen := binary.LittleEndian.Uint64(prefix[4:12])
	if envLen == 0 && bodyLen == 0 {
		return nil, nil // a ping
	}
	if envLen > 1<<24 || bodyLen > 1<<30 {
		return nil, fmt.Errorf("frame prefix env %d body %d", envLen, bodyLen)
	}
	env := make([]byte, envLen)
	if _, err := io.ReadFull(r, env); err != nil {
		return nil, err
	}
	body := make([]byte, bodyLen)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	req := &wreq{env: map[string]string{}, body: body}
	parts := strings.Split(string(env), "\x00")
	if len(parts)%2 != 0 {
		req.err = fmt.Errorf("environ has %d NUL-separated parts, want an even number", len(parts))
		return req, nil
	}
	for i := 0; i < len(parts); i += 2 {
		k, v := parts[i], parts[i+1]
		if _, dup := req.env[k]; dup && req.err == nil {
			req.err = fmt.Errorf("environ key %q given twice", k)
		}
		req.env[k] = v
		req.keys = append(req.keys, k)
	}
	return req, nil
}

// Response frames.

func u32(n uint32) []byte {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], n)
	return b[:]
}

// headFrame is the frame for a status line and name, value... pairs.
func headFrame(status string, fields ...string) []byte {
	s := strings.Join(append([]string{status}, fields...), "\x00")
	return append(u32(uint32(len(s))), s...)
}

func chunkFrame(b []byte) []byte { return append(u32(uint32(len(b))), b...) }

var (
	endFrame   = u32(0)
	abortFrame = u32(0xFFFFFFFF)
)

// respond writes a whole response: head, the body in chunks, end.
func (c *fconn) respond(status string, fields []string, chunks ...[]byte) error {
	out := headFrame(status, fields...)
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
func replyOK(c *fconn, _ *wreq) bool {
	c.respond("200 OK", []string{"Content-Type", "text/plain"}, []byte("hello"))
	return true
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

// newServer builds a Server over the sockets in dir, which the pool has
// already scanned.
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
	if err := s.Pool().Scan(); err != nil {
		t.Fatalf("Scan: %v", err)
	}
	// Every worker found gets requests once it has answered a ping.
	st := s.Pool().Stats()
	waitReady(t, s, st.Workers+st.Starting)
	return s
}

// waitReady waits until n workers have answered their ping.
func waitReady(t *testing.T, s *Server, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := s.Pool().Stats()
		if st.Workers >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("workers ready: got %d (%d starting), want %d", st.Workers, st.Starting, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// serve runs s on a real listener until the test ends and returns the
// listener's address.
func serve(t *testing.T, s *Server) string {
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
	return ls.HTTP[0].Addr().String()
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
