package pool

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// isClosed says c was closed on our side.
func isClosed(c net.Conn) bool {
	err := c.SetReadDeadline(time.Now())
	if err == nil {
		_, err = c.Read(make([]byte, 1))
	}
	return errors.Is(err, net.ErrClosed)
}

func idleCount(p *Pool, w *Worker) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(w.idle)
}

func dial(t *testing.T, w *Worker) *Conn {
	t.Helper()
	c, err := w.Conn(context.Background())
	if err != nil {
		t.Fatalf("Conn() error = %v, want nil", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestConnDials(t *testing.T) {
	d := newSockDir(t)
	// No accept loop: the test is the worker.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(d.dir, "1.sock"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := newPool(t, d, Options{})
	c := dial(t, worker(t, p, "1"))
	if c.Reused {
		t.Errorf("Reused = true for a new connection, want false")
	}
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(srv, buf); err != nil {
		t.Fatal(err)
	}
	if got, want := string(buf), "ping"; got != want {
		t.Errorf("worker read %q, want %q", got, want)
	}
	if _, err := srv.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	got, err := c.R.Peek(4)
	if err != nil || string(got) != "pong" {
		t.Errorf("c.R.Peek(4) = (%q, %v), want (%q, nil)", got, err, "pong")
	}
}

// Conn's errors are the ones the edge tells a down worker by.
func TestConnDialErrors(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, d *sockDir)
		want  error
	}{
		{
			name:  "socket removed",
			setup: func(t *testing.T, d *sockDir) { d.remove("1") },
			want:  syscall.ENOENT,
		},
		{
			name: "nobody listening",
			setup: func(t *testing.T, d *sockDir) {
				ln := d.lns["1.sock"]
				ln.SetUnlinkOnClose(false)
				ln.Close()
			},
			want: syscall.ECONNREFUSED,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newSockDir(t)
			d.add("1")
			p := newPool(t, d, Options{})
			w := worker(t, p, "1")
			tt.setup(t, d)
			c, err := w.Conn(context.Background())
			if !errors.Is(err, tt.want) {
				if c != nil {
					c.Close()
				}
				t.Fatalf("Conn() error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestConnReuse(t *testing.T) {
	tests := []struct {
		name     string
		capacity int
		puts     int // conns dialed and put back
		gets     int // then taken again
		wantNew  int // of those, newly dialed
	}{
		{name: "one put, one get", capacity: 1, puts: 1, gets: 1, wantNew: 0},
		{name: "one put, two gets", capacity: 2, puts: 1, gets: 2, wantNew: 1},
		{name: "three put, capacity two", capacity: 2, puts: 3, gets: 3, wantNew: 1},
		{name: "nothing put", capacity: 2, gets: 2, wantNew: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newSockDir(t)
			d.add("1")
			p := newPool(t, d, Options{Capacity: tt.capacity})
			w := worker(t, p, "1")
			put := map[*Conn]bool{}
			var conns []*Conn
			for i := 0; i < tt.puts; i++ {
				conns = append(conns, dial(t, w))
			}
			for _, c := range conns {
				put[c] = true
				c.Put()
			}
			newly := 0
			for i := 0; i < tt.gets; i++ {
				c := dial(t, w)
				if c.Reused != put[c] {
					t.Errorf("get %d: Reused = %v, want %v", i, c.Reused, put[c])
				}
				if put[c] && isClosed(c) {
					t.Errorf("get %d: reused conn is closed", i)
				}
				if !c.Reused {
					newly++
				}
			}
			if newly != tt.wantNew {
				t.Errorf("newly dialed = %d, want %d", newly, tt.wantNew)
			}
		})
	}
}

func TestConnPut(t *testing.T) {
	tests := []struct {
		name     string
		capacity int
		dial     int
		before   func(t *testing.T, p *Pool, w *Worker, d *sockDir) // before the Puts
		after    func(t *testing.T, p *Pool, w *Worker, d *sockDir) // after them
		wantIdle int
		wantOpen []bool // per dialed conn
	}{
		{name: "within capacity", capacity: 2, dial: 2, wantIdle: 2, wantOpen: []bool{true, true}},
		{name: "over capacity", capacity: 2, dial: 3, wantIdle: 2, wantOpen: []bool{true, true, false}},
		{name: "capacity 1", capacity: 1, dial: 3, wantIdle: 1, wantOpen: []bool{true, false, false}},
		{
			name: "stale closes idle", capacity: 2, dial: 2,
			after:    func(t *testing.T, p *Pool, w *Worker, d *sockDir) { p.Stale(w) },
			wantIdle: 0, wantOpen: []bool{false, false},
		},
		{
			name: "put after worker gone", capacity: 2, dial: 2,
			before: func(t *testing.T, p *Pool, w *Worker, d *sockDir) {
				d.stop(p, "1")
			},
			wantIdle: 0, wantOpen: []bool{false, false},
		},
		{
			name: "gone with outstanding keeps idle", capacity: 2, dial: 2,
			before: func(t *testing.T, p *Pool, w *Worker, d *sockDir) {
				acquire(t, p)
			},
			after: func(t *testing.T, p *Pool, w *Worker, d *sockDir) {
				d.stop(p, "1")
			},
			wantIdle: 2, wantOpen: []bool{true, true},
		},
		{
			name: "gone, then last release", capacity: 2, dial: 2,
			before: func(t *testing.T, p *Pool, w *Worker, d *sockDir) {
				acquire(t, p)
			},
			after: func(t *testing.T, p *Pool, w *Worker, d *sockDir) {
				d.stop(p, "1")
				p.Release(w)
			},
			wantIdle: 0, wantOpen: []bool{false, false},
		},
		{
			name: "put while down", capacity: 2, dial: 2,
			before:   func(t *testing.T, p *Pool, w *Worker, d *sockDir) { p.MarkDown(w) },
			wantIdle: 0, wantOpen: []bool{false, false},
		},
		{
			name: "mark down closes idle", capacity: 2, dial: 2,
			after:    func(t *testing.T, p *Pool, w *Worker, d *sockDir) { p.MarkDown(w) },
			wantIdle: 0, wantOpen: []bool{false, false},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newSockDir(t)
			d.add("1")
			p := newPool(t, d, Options{Capacity: tt.capacity, DownFor: time.Minute})
			w := worker(t, p, "1")
			var conns []*Conn
			for i := 0; i < tt.dial; i++ {
				conns = append(conns, dial(t, w))
			}
			if tt.before != nil {
				tt.before(t, p, w, d)
			}
			for _, c := range conns {
				c.Put()
			}
			if tt.after != nil {
				tt.after(t, p, w, d)
			}
			if got := idleCount(p, w); got != tt.wantIdle {
				t.Errorf("idle conns = %d, want %d", got, tt.wantIdle)
			}
			for i, c := range conns {
				if got, want := !isClosed(c), tt.wantOpen[i]; got != want {
					t.Errorf("conn %d open = %v, want %v", i, got, want)
				}
			}
		})
	}
}

// After Stale the next Conn dials afresh.
func TestConnAfterStale(t *testing.T) {
	d := newSockDir(t)
	d.add("1")
	p := newPool(t, d, Options{Capacity: 2})
	w := worker(t, p, "1")
	old := dial(t, w)
	old.Put()
	p.Stale(w)
	c := dial(t, w)
	if c == old || c.Reused {
		t.Errorf("Conn() after Stale: same = %v, Reused = %v; want a new conn, Reused false", c == old, c.Reused)
	}
	if isClosed(c) {
		t.Errorf("new conn is closed")
	}
	if _, err := os.Stat(w.Path); err != nil {
		t.Errorf("worker socket: %v", err)
	}
}

// TestClose: a stopping edged lets go of its idle connections at once and
// keeps none after, so the next edged's requests reach sync workers.
func TestClose(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "1.sock"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	p := New(Options{Dir: dir, Capacity: 1, QueueLength: 1, QueueTimeout: time.Second})
	if err := p.Scan(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	w, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c, err := w.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Put()
	idle := <-accepted
	p.Close()
	idle.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("idle connection after Close: read error %v, want EOF (closed by the pool)", err)
	}
	// A request still running after Close does not park its connection.
	c2, err := w.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	running := <-accepted
	c2.Put()
	p.Release(w)
	running.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := running.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("connection put back after Close: read error %v, want EOF", err)
	}
}
