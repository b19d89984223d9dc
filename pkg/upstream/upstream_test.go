package upstream

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edged/edged/pkg/sd"
	"github.com/edged/edged/pkg/wire"
)

// memBody is a request body held in memory.
type memBody []byte

func (b memBody) Len() int64                         { return int64(len(b)) }
func (b memBody) InMemory() ([]byte, bool)           { return b, true }
func (b memBody) WriteTo(w io.Writer) (int64, error) { n, err := w.Write(b); return int64(n), err }

// listen binds a worker socket with the given backlog in a fresh directory.
func listen(t *testing.T, backlog int) (*net.UnixListener, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "up")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "q.sock")
	f, err := sd.ListenUnix(path, backlog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	l, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.(*net.UnixListener), path
}

// serve answers every connection on ln with answer(frame count so far).
func serve(ln *net.UnixListener, answer func(n int32, c net.Conn)) *atomic.Int32 {
	var frames atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := wire.ReadRequest(bufio.NewReader(c), 1<<30); err != nil {
					return
				}
				answer(frames.Add(1), c)
			}()
		}
	}()
	return &frames
}

func frame(worker, status string, body string) []byte {
	out := wire.AppendHead(nil, worker, status)
	if body != "" {
		out = wire.AppendBody(out, []byte(body))
	}
	return wire.AppendEnd(out)
}

func request(idempotent bool) *Request {
	var f wire.Request
	for _, name := range wire.RequestFields {
		f.Add(name)
	}
	return &Request{Frame: &f, Body: memBody("body"), Idempotent: idempotent}
}

var limits = Limits{QueueTimeout: 2 * time.Second, AppTimeout: 2 * time.Second}

// Many requests at once, each on its own connection: every one gets its
// own answer (run with -race).
func TestRoundTripConcurrent(t *testing.T) {
	ln, path := listen(t, 64)
	serve(ln, func(n int32, c net.Conn) { c.Write(frame("4", "200 OK", "hello")) })
	tr := New(path, limits)
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var resp Response
			if err := tr.RoundTrip(context.Background(), request(true), &resp); err != nil {
				t.Errorf("RoundTrip: %v", err)
				return
			}
			defer resp.Close()
			var body []byte
			if err := resp.ReadBody(false, func(b []byte) error { body = append(body, b...); return nil }); err != nil {
				t.Errorf("ReadBody: %v", err)
			}
			if resp.Worker != "4" || resp.Status != 200 || string(body) != "hello" {
				t.Errorf("got worker %q status %d body %q", resp.Worker, resp.Status, body)
			}
		}()
	}
	wg.Wait()
	if n := tr.InFlight(); n != 0 {
		t.Errorf("InFlight() = %d after every response was closed, want 0", n)
	}
}

func TestRoundTripErrors(t *testing.T) {
	tests := []struct {
		name       string
		setup      func(t *testing.T) string // returns the socket path
		idempotent bool
		want       error
		wantFrames int32
	}{
		{"no socket", func(t *testing.T) string { return filepath.Join(t.TempDir(), "none.sock") }, true, ErrNoWorkers, 0},
		{"queue full", func(t *testing.T) string {
			_, path := listen(t, 0)
			// The one place the backlog has is taken.
			c, err := net.Dial("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return path
		}, true, ErrQueueFull, 0},
		{"expired in the queue", func(t *testing.T) string {
			ln, path := listen(t, 8)
			serve(ln, func(n int32, c net.Conn) { c.Write(wire.AppendHeader(nil, wire.TypeExpired, 0, 0)) })
			return path
		}, true, ErrQueueTimeout, 1},
		{"hung up, safe to repeat: three tries", func(t *testing.T) string {
			ln, path := listen(t, 8)
			serve(ln, func(n int32, c net.Conn) {})
			return path
		}, true, io.EOF, 3},
		{"hung up, not safe to repeat: one", func(t *testing.T) string {
			ln, path := listen(t, 8)
			serve(ln, func(n int32, c net.Conn) {})
			return path
		}, false, io.EOF, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.setup(t)
			tr := New(path, limits)
			var resp Response
			err := tr.RoundTrip(context.Background(), request(tt.idempotent), &resp)
			if !errors.Is(err, tt.want) {
				t.Errorf("RoundTrip = %v, want %v", err, tt.want)
			}
			if n := tr.InFlight(); n != 0 {
				t.Errorf("InFlight() = %d after a failed round trip, want 0", n)
			}
		})
	}
}

// A request no worker takes is given up at the queue timeout, even
// though its connection was accepted into the backlog.
func TestRoundTripQueueTimeout(t *testing.T) {
	_, path := listen(t, 8) // nobody accepts
	tr := New(path, Limits{QueueTimeout: 300 * time.Millisecond, AppTimeout: 10 * time.Second})
	start := time.Now()
	var resp Response
	err := tr.RoundTrip(context.Background(), request(true), &resp)
	if !errors.Is(err, ErrQueueTimeout) {
		t.Errorf("RoundTrip = %v, want %v", err, ErrQueueTimeout)
	}
	if took := time.Since(start); took < 250*time.Millisecond || took > 3*time.Second {
		t.Errorf("took %v, want about the 300ms queue timeout", took)
	}
}

// A request a worker took is given app.timeout from then, not the queue
// timeout.
func TestRoundTripTakenThenSlow(t *testing.T) {
	ln, path := listen(t, 8)
	serve(ln, func(n int32, c net.Conn) {
		time.Sleep(700 * time.Millisecond) // past the queue timeout, within the app's
		c.Write(frame("1", "200 OK", "late"))
	})
	tr := New(path, Limits{QueueTimeout: 300 * time.Millisecond, AppTimeout: 5 * time.Second})
	var resp Response
	if err := tr.RoundTrip(context.Background(), request(true), &resp); err != nil {
		t.Fatalf("RoundTrip = %v, want the late answer", err)
	}
	resp.Close()
}

// Regression: the read deadline of a quick first byte was the queue's
// look-again interval (250 ms), so an answer whose body took longer than
// that to arrive was cut off with a timeout. The body has app.timeout.
func TestRoundTripSlowBody(t *testing.T) {
	ln, path := listen(t, 8)
	serve(ln, func(n int32, c net.Conn) {
		c.Write(wire.AppendHead(nil, "1", "200 OK"))
		time.Sleep(600 * time.Millisecond) // past queuePoll, within app.timeout
		c.Write(wire.AppendEnd(wire.AppendBody(nil, []byte("late"))))
	})
	tr := New(path, Limits{QueueTimeout: 5 * time.Second, AppTimeout: 5 * time.Second})
	var resp Response
	if err := tr.RoundTrip(context.Background(), request(true), &resp); err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	defer resp.Close()
	var body []byte
	if err := resp.ReadBody(false, func(b []byte) error { body = append(body, b...); return nil }); err != nil || string(body) != "late" {
		t.Errorf("ReadBody: %q, %v; want \"late\"", body, err)
	}
}

// A request whose client went away is given up while it waits in the
// queue, not at queue_timeout; and while a worker runs it, not at
// app.timeout.
func TestRoundTripClientGone(t *testing.T) {
	for _, taken := range []bool{false, true} {
		ln, path := listen(t, 8)
		if taken {
			serve(ln, func(_ int32, c net.Conn) { time.Sleep(10 * time.Second) })
		}
		tr := New(path, Limits{QueueTimeout: 20 * time.Second, AppTimeout: 20 * time.Second})
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		var resp Response
		err := tr.RoundTrip(ctx, request(true), &resp)
		want := ErrGoneQueued
		if taken {
			want = ErrGoneTaken
		}
		if took := time.Since(start); !errors.Is(err, context.Canceled) || !errors.Is(err, want) || took > 150*time.Millisecond {
			t.Errorf("taken %v: RoundTrip = %v after %v, want %v (context.Canceled) at once", taken, err, took, want)
		}
		if n := tr.InFlight(); n != 0 {
			t.Errorf("taken %v: %d in flight after, want 0", taken, n)
		}
	}
}

// slot counts its releases.
type slot struct{ released atomic.Int32 }

func (s *slot) Release() { s.released.Add(1) }

// A request given up before a worker took it keeps its slot until a
// worker has taken it off the queue; that worker reads a Gone frame after
// the request, and the hang-up.
func TestRoundTripGoneQueuedHoldsSlot(t *testing.T) {
	ln, path := listen(t, 8)
	tr := New(path, Limits{QueueTimeout: 20 * time.Second, AppTimeout: 20 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	var s slot
	req := request(true)
	req.Slot = &s
	var resp Response
	if err := tr.RoundTrip(ctx, req, &resp); !errors.Is(err, ErrGoneQueued) {
		t.Fatalf("RoundTrip = %v, want ErrGoneQueued", err)
	}
	if n := s.released.Load(); n != 0 || tr.Abandoned() != 1 {
		t.Fatalf("released %d, abandoned %d while still queued, want 0 and 1", n, tr.Abandoned())
	}
	c, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	// The whole request is there to read, then a Gone frame, then EOF:
	// edged hung up.
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if gone := wire.AppendHeader(nil, wire.TypeGone, 0, 0); !bytes.HasSuffix(got, gone) {
		t.Errorf("the worker read %d bytes ending %x, want the Gone frame %x last", len(got), got[max(0, len(got)-8):], gone)
	}
	c.Close()
	deadline := time.Now().Add(2 * time.Second)
	for s.released.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := s.released.Load(); n != 1 || tr.Abandoned() != 0 || tr.InFlight() != 0 {
		t.Errorf("after the worker dropped it: released %d, abandoned %d, in flight %d; want 1, 0, 0", n, tr.Abandoned(), tr.InFlight())
	}
}

// A slot is released once whichever way a round trip ends.
func TestRoundTripReleasesSlot(t *testing.T) {
	ln, path := listen(t, 8)
	serve(ln, func(_ int32, c net.Conn) { c.Write(frame("1", "200 OK", "hi")) })
	tr := New(path, Limits{QueueTimeout: time.Second, AppTimeout: time.Second})
	var s slot
	req := request(true)
	req.Slot = &s
	var resp Response
	if err := tr.RoundTrip(context.Background(), req, &resp); err != nil {
		t.Fatal(err)
	}
	if n := s.released.Load(); n != 0 {
		t.Errorf("released %d before the answer was closed", n)
	}
	resp.Close()
	resp.Close()
	if n := s.released.Load(); n != 1 {
		t.Errorf("released %d times after Close, want 1", n)
	}
	// No worker socket at all: released on the error.
	var s2 slot
	req2 := request(true)
	req2.Slot = &s2
	if err := New(path+".none", Limits{QueueTimeout: time.Second}).RoundTrip(context.Background(), req2, &resp); err == nil {
		t.Fatal("RoundTrip to no socket succeeded")
	}
	if n := s2.released.Load(); n != 1 {
		t.Errorf("released %d times after a failed dial, want 1", n)
	}
}

// A caller's Waker ends the wait as the context's end would, and a
// request whose waker was woken before it started is not sent.
func TestRoundTripWaker(t *testing.T) {
	ln, path := listen(t, 8)
	tr := New(path, Limits{QueueTimeout: 20 * time.Second, AppTimeout: 20 * time.Second})
	var w Waker
	req := request(true)
	req.Waker = &w
	time.AfterFunc(50*time.Millisecond, w.Wake)
	start := time.Now()
	var resp Response
	err := tr.RoundTrip(context.Background(), req, &resp)
	if !errors.Is(err, ErrGoneQueued) || time.Since(start) > 150*time.Millisecond {
		t.Fatalf("RoundTrip = %v after %v, want ErrGoneQueued at once", err, time.Since(start))
	}
	c, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(c) // the request, then EOF
	c.Close()

	// Woken already: nothing is sent.
	if err := tr.RoundTrip(context.Background(), req, &resp); !errors.Is(err, ErrGoneQueued) {
		t.Fatalf("RoundTrip after Wake = %v, want ErrGoneQueued", err)
	}
	ln.SetDeadline(time.Now().Add(100 * time.Millisecond))
	if c, err := ln.AcceptUnix(); err == nil {
		c.Close()
		t.Errorf("a request whose waker was woken before it started reached the queue")
	}
	// Reset: it goes again.
	w.Reset()
	ln.SetDeadline(time.Time{})
	serve(ln, func(_ int32, c net.Conn) { c.Write(frame("1", "200 OK", "hi")) })
	if err := tr.RoundTrip(context.Background(), req, &resp); err != nil {
		t.Fatalf("RoundTrip after Reset: %v", err)
	}
	resp.Close()
}
