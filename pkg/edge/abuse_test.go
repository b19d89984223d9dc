package edge

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/edged/edged/pkg/wire"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// h2Frame encodes one HTTP/2 frame.
func h2Frame(typ, flags byte, stream uint32, payload []byte) []byte {
	b := []byte{byte(len(payload) >> 16), byte(len(payload) >> 8), byte(len(payload)), typ, flags}
	b = binary.BigEndian.AppendUint32(b, stream)
	return append(b, payload...)
}

// hpackGET is a request head in HPACK with no table and no Huffman
// coding: GET https://localhost/.
var hpackGET = []byte{0x82, 0x87, 0x84, 0x01, 9, 'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't'}

// A client that sends frames which carry no request faster than the flood
// budget has its connection closed; one that sends a few keeps it.
func TestH2Flood(t *testing.T) {
	addr, conf, _ := serveTLS(t, replyOK)
	ping := func(int) []byte { return h2Frame(6, 0, 0, make([]byte, 8)) }
	tests := []struct {
		name   string
		frames func(i int) []byte
		n      int
		closed bool
	}{
		{"PING flood", ping, 20000, true},
		{"SETTINGS flood", func(int) []byte { return h2Frame(4, 0, 0, nil) }, 20000, true},
		{"rapid reset", func(i int) []byte {
			id := uint32(2*i + 1)
			return append(h2Frame(1, 0x5, id, hpackGET), h2Frame(3, 0, id, []byte{0, 0, 0, 8})...)
		}, 20000, true},
		{"a few PINGs", ping, 50, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialTLS(t, addr, conf, "h2")
			var got atomic.Int64
			go func() { // take the answers
				n, _ := io.Copy(io.Discard, c)
				got.Store(n)
			}()
			out := append([]byte(clientPreface), h2Frame(4, 0, 0, nil)...)
			if _, err := c.Write(out); err != nil {
				t.Fatal(err)
			}
			sent, closed := 0, false
			for ; sent < tt.n; sent++ {
				c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Write(tt.frames(sent)); err != nil {
					closed = true
					break
				}
			}
			if !closed {
				// Still open? A close shows within a moment.
				time.Sleep(300 * time.Millisecond)
				_, err := c.Write(ping(0))
				closed = err != nil
			}
			if closed != tt.closed {
				t.Errorf("after %d frames: closed %v, want %v", sent, closed, tt.closed)
			}
			if tt.closed {
				// What edged answered before it closed: each PING's
				// acknowledgement is 17 bytes.
				time.Sleep(100 * time.Millisecond)
				if n := got.Load(); n > 17*2*floodBurst+4096 {
					t.Errorf("edged sent %d bytes of answers before it closed, want at most about %d", n, 17*floodBurst)
				}
			}
		})
	}
}

// One HTTP/2 connection has at most queuePerConn requests with the
// workers; the rest wait for room at the edge, not in the queue.
func TestH2QueuePerConn(t *testing.T) {
	dir := socketDir(t)
	listenQueue(t, dir, 64) // no worker takes anything
	cert, key, pool := testCert(t, t.TempDir())
	s := newServer(t, dir, "limits.queue_timeout", `"1500ms"`, "listen.https", `["127.0.0.1:0"]`,
		"tls", `[{cert = "`+cert+`", key = "`+key+`"}]`)
	ls := serveAll(t, s)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	// One request first, so that the others share its connection.
	client.Get("https://" + ls.HTTPS[0].Addr().String() + "/first")
	var wg sync.WaitGroup
	codes := make(chan int, 2*queuePerConn)
	for i := 0; i < 2*queuePerConn; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Get("https://" + ls.HTTPS[0].Addr().String() + "/")
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			if resp.ProtoMajor != 2 {
				t.Errorf("proto %s, want HTTP/2", resp.Proto)
			}
			codes <- resp.StatusCode
		}()
	}
	time.Sleep(700 * time.Millisecond)
	if n, _ := s.withWorkers(); n > queuePerConn {
		t.Errorf("%d requests of one connection with the workers, want at most %d", n, queuePerConn)
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusServiceUnavailable {
			t.Errorf("status %d, want 503 (no worker took anything)", c)
		}
	}
}

func TestFrameScanner(t *testing.T) {
	stream := []byte(clientPreface)
	stream = append(stream, h2Frame(4, 0, 0, nil)...)
	stream = append(stream, h2Frame(1, 5, 1, []byte("some headers"))...)
	stream = append(stream, h2Frame(0, 0, 1, bytes.Repeat([]byte("x"), 70000))...)
	stream = append(stream, h2Frame(6, 1, 0, make([]byte, 8))...)
	want := []string{"4/0/0", "1/5/12", "0/0/70000", "6/1/8"}
	type seen = []string
	run := func(pieces [][]byte) seen {
		var got seen
		s := frameScanner{preface: len(clientPreface)}
		for _, p := range pieces {
			s.feed(p, func(typ, flags byte, n uint32) bool {
				got = append(got, fmt.Sprintf("%d/%d/%d", typ, flags, n))
				return true
			})
		}
		return got
	}
	if got := run([][]byte{stream}); !reflect.DeepEqual(got, want) {
		t.Errorf("whole: frames %v, want %v", got, want)
	}
	var bytewise [][]byte
	for i := range stream {
		bytewise = append(bytewise, stream[i:i+1])
	}
	if got := run(bytewise); !reflect.DeepEqual(got, want) {
		t.Errorf("byte by byte: frames %v, want %v", got, want)
	}
}

// The scanner sees the same frames however the bytes are cut.
func FuzzFrameScanner(f *testing.F) {
	f.Add([]byte(clientPreface+"\x00\x00\x00\x04\x00\x00\x00\x00\x00"), 3)
	f.Add(h2Frame(0, 0, 1, []byte("abc")), 1)
	f.Fuzz(func(t *testing.T, b []byte, cut int) {
		type frame struct {
			typ, flags byte
			n          uint32
		}
		collect := func(pieces ...[]byte) []frame {
			var got []frame
			s := frameScanner{preface: len(clientPreface)}
			for _, p := range pieces {
				s.feed(p, func(typ, flags byte, n uint32) bool {
					got = append(got, frame{typ, flags, n})
					return true
				})
			}
			return got
		}
		if cut < 0 {
			cut = -cut
		}
		if len(b) > 0 {
			cut %= len(b) + 1
		} else {
			cut = 0
		}
		whole, split := collect(b), collect(b[:cut], b[cut:])
		if !reflect.DeepEqual(whole, split) {
			t.Fatalf("cut at %d: %v, whole %v", cut, split, whole)
		}
	})
}

// panicHeader is a ResponseWriter whose Header panics the first time, as
// a bug on the way to the answer would.
type panicHeader struct {
	*httptest.ResponseRecorder
	once sync.Once
}

func (w *panicHeader) Header() http.Header {
	w.once.Do(func() { panic("a bug") })
	return w.ResponseRecorder.Header()
}

// A panic in the handler is a 500 for that request, logged at error level
// with its stack, and the request is still logged and counted.
func TestHandlerPanic(t *testing.T) {
	dir := socketDir(t)
	startWorker(t, dir, "1", replyOK)
	var log logBuffer
	s := newServerLog(t, dir, zerolog.New(&log), "log.access", "true")
	w := &panicHeader{ResponseRecorder: httptest.NewRecorder()}
	s.ServeHTTP(w, environRequest("GET", "/", nil))
	if w.Code != http.StatusInternalServerError {
		t.Errorf("status %d, want 500", w.Code)
	}
	out := log.String()
	if !strings.Contains(out, `"level":"error"`) || !strings.Contains(out, "a bug") || !strings.Contains(out, "goroutine") {
		t.Errorf("log has no error with the panic and its stack:\n%s", out)
	}
	if !strings.Contains(out, `"status":500`) {
		t.Errorf("no access event with status 500:\n%s", out)
	}
	if n := s.inFlight.Load(); n != 0 {
		t.Errorf("in flight %d after the panic, want 0", n)
	}
}

// A streamed answer that its worker aborts is cut short for the client,
// and still logged once and counted, the in-flight count back at 0.
func TestAbortedStreamAccounted(t *testing.T) {
	dir := socketDir(t)
	startWorker(t, dir, "1", raw(headFrame("200 OK", "Content-Type", "text/plain", "X-Accel-Buffering", "no"),
		chunkFrame([]byte("part")), abortFrame))
	var log logBuffer
	s := newServerLog(t, dir, zerolog.New(&log), "log.access", "true", "metrics.listen", fmt.Sprintf("%q", filepath.Join(dir, "metrics.sock")))
	base := httpServer(t, s)
	resp, err := http.Get(base + "/stream")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Errorf("the aborted answer read whole, want it cut short")
	}
	deadline := time.Now().Add(2 * time.Second)
	for s.inFlight.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := s.inFlight.Load(); n != 0 {
		t.Errorf("in flight %d, want 0", n)
	}
	if n := strings.Count(log.String(), `"log":"access"`); n != 1 {
		t.Errorf("%d access events, want 1:\n%s", n, log.String())
	}
	if n := s.requests.Load(); n != 1 {
		t.Errorf("%d requests counted, want 1", n)
	}
}

// Headers the app names in its own Connection header are not passed on.
func TestConnectionOptions(t *testing.T) {
	dir := socketDir(t)
	startWorker(t, dir, "1", answer("200 OK", []string{"Content-Type", "text/plain", "Connection", "X-Hop, close",
		"X-Hop", "secret", "X-Kept", "yes"}, []byte("hi")))
	resp, _ := fetch(t, httpServer(t, newServer(t, dir)), "GET", "/", nil)
	if v := resp.Header.Get("X-Hop"); v != "" {
		t.Errorf("X-Hop: %q passed on, want it dropped", v)
	}
	if v := resp.Header.Get("X-Kept"); v != "yes" {
		t.Errorf("X-Kept: %q, want yes", v)
	}
}

// Regression: a path that is not UTF-8 panicked the handler when metrics
// were on (the route label).
func TestRouteLabelAnyBytes(t *testing.T) {
	dir := socketDir(t)
	startWorker(t, dir, "1", func(c *fconn, _ *wreq) {
		// With what the worker measured: the route label comes from it.
		c.Write(append(append(headFrameFrom("1", "200 OK", "Content-Type", "text/plain"), chunkFrame([]byte("hello"))...),
			wire.AppendStats(nil, wire.Stats{Taken: time.Now().UnixNano(), Wall: time.Millisecond, PID: 7})...))
	})
	s := newServer(t, dir, "metrics.listen", fmt.Sprintf("%q", filepath.Join(dir, "metrics.sock")))
	resp, body := fetch(t, httpServer(t, s), "GET", "/a%ff/b/%c3%28", nil)
	if resp.StatusCode != 200 || string(body) != "hello" {
		t.Errorf("got %d %q, want the app's 200 hello", resp.StatusCode, body)
	}
	rec := httptest.NewRecorder()
	s.metrics.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `route="/:id/b/:id"`) {
		t.Errorf("metrics: %d, no route label for the path:\n%.2000s", rec.Code, rec.Body.String())
	}
}

// Any path folds into a label the Prometheus client takes.
func FuzzRouteOf(f *testing.F) {
	for _, p := range []string{"/", "/a\xff", "/orders/1234", "/\x00/x", "/a/b/c/d/e/f/g", "/é/ü"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, path string) {
		r := routeOf(path)
		if !utf8.ValidString(r) {
			t.Fatalf("routeOf(%q) = %q, not UTF-8", path, r)
		}
		if routeOf(r) != r {
			t.Fatalf("routeOf(%q) = %q, but routeOf(that) = %q", path, r, routeOf(r))
		}
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x"}, []string{"route"})
		if _, err := v.GetMetricWithLabelValues(r); err != nil {
			t.Fatalf("routeOf(%q) = %q: %v", path, r, err)
		}
	})
}

// An HTTP/1 client that hangs up while its request waits for a worker
// takes it out of the queue at once: logged 499, and the worker that
// takes it later finds edged gone.
func TestClientGoneLeavesQueue(t *testing.T) {
	dir := socketDir(t)
	q := listenQueue(t, dir, 16) // no worker takes anything yet
	var log logBuffer
	s := newServerLog(t, dir, zerolog.New(&log), "log.access", "true", "limits.queue_timeout", `"30s"`)
	c, _ := connect(t, s)
	c.Write([]byte("GET /waits HTTP/1.1\r\nHost: x\r\n\r\n"))
	time.Sleep(100 * time.Millisecond)
	closed := time.Now()
	c.Close()
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(log.String(), `"status":499`) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if took := time.Since(closed); !strings.Contains(log.String(), goneQueued) || took > time.Second {
		t.Fatalf("%v after the hang-up, no 499 saying the app did not run it:\n%s", took, log.String())
	}
	w, err := q.ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := readRequest(bufio.NewReader(w)); err != nil {
		t.Fatalf("the queued request: %v", err)
	}
	if n, err := w.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("after the request: %d bytes, %v; want EOF, edged hung up", n, err)
	}
}
