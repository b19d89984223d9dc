package pool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"
)

// sockDir is a socket directory with real listening Unix sockets in it.
type sockDir struct {
	t   *testing.T
	dir string
	lns map[string]*net.UnixListener // by file name
}

func newSockDir(t *testing.T) *sockDir {
	t.Helper()
	return &sockDir{t: t, dir: t.TempDir(), lns: map[string]*net.UnixListener{}}
}

// listen makes a socket named file (e.g. "3.sock") in the directory and
// accepts connections on it until the test ends.
func (d *sockDir) listen(file string) *net.UnixListener {
	d.t.Helper()
	ln, err := listenUnix(filepath.Join(d.dir, file))
	if err != nil {
		d.t.Fatal(err)
	}
	d.lns[file] = ln
	d.t.Cleanup(func() { ln.Close() })
	return ln
}

// add makes the sockets of the workers named names.
func (d *sockDir) add(names ...string) {
	d.t.Helper()
	for _, n := range names {
		d.listen(n + ".sock")
	}
}

// remove deletes the socket file of worker name, as systemd does when the
// instance stops; the listener stays open.
func (d *sockDir) remove(name string) {
	d.t.Helper()
	if err := os.Remove(filepath.Join(d.dir, name+".sock")); err != nil {
		d.t.Fatal(err)
	}
}

// stop removes worker name's socket, as systemd does when the instance
// stops, and has p see it.
func (d *sockDir) stop(p *Pool, name string) {
	d.t.Helper()
	d.remove(name)
	if err := p.Scan(); err != nil {
		d.t.Fatalf("Scan() = %v, want nil", err)
	}
}

// listenUnix listens at path and accepts (and holds) connections until
// the listener closes.
func listenUnix(path string) (*net.UnixListener, error) {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	return ln, nil
}

// newPool returns a pool over d that has scanned it once.
func newPool(t *testing.T, d *sockDir, opt Options) *Pool {
	t.Helper()
	opt.Dir = d.dir
	if opt.QueueTimeout == 0 {
		opt.QueueTimeout = 10 * time.Second
	}
	p := New(opt)
	if err := p.Scan(); err != nil {
		t.Fatalf("Scan() = %v, want nil", err)
	}
	return p
}

// worker returns the live worker named name.
func worker(t *testing.T, p *Pool, name string) *Worker {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.workers {
		if w.Name == name {
			return w
		}
	}
	t.Fatalf("no live worker %q", name)
	return nil
}

// hold takes n slots on w directly, bypassing the choice of worker; give
// them back with Release.
func hold(p *Pool, w *Worker, n int) {
	p.mu.Lock()
	w.outstanding += n
	p.mu.Unlock()
}

func outstanding(p *Pool, w *Worker) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return w.outstanding
}

// acquire is an Acquire that must succeed at once.
func acquire(t *testing.T, p *Pool, exclude ...*Worker) *Worker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	w, err := p.Acquire(ctx, exclude...)
	if err != nil {
		t.Fatalf("Acquire() error = %v, want a worker", err)
	}
	return w
}

type result struct {
	w   *Worker
	err error
	at  time.Duration // since the call
}

// acquireAsync calls Acquire in the background and waits until the call
// is in the queue (Stats().Queued reaches queued), so that several such
// calls queue in the order they are made.
func acquireAsync(t *testing.T, p *Pool, ctx context.Context, queued int, exclude ...*Worker) <-chan result {
	t.Helper()
	ch := make(chan result, 1)
	go func() {
		start := time.Now()
		w, err := p.Acquire(ctx, exclude...)
		ch <- result{w, err, time.Since(start)}
	}()
	waitQueued(t, p, queued)
	return ch
}

func waitQueued(t *testing.T, p *Pool, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for p.Stats().Queued != n {
		if time.Now().After(deadline) {
			t.Fatalf("Stats().Queued = %d, want %d", p.Stats().Queued, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// recv waits for a background Acquire to return.
func recv(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("Acquire still waiting after 5s")
		return result{}
	}
}

// handed checks that the background Acquire ch, made by who, got want.
func handed(t *testing.T, ch <-chan result, want *Worker, who string) {
	t.Helper()
	if r := recv(t, ch); r.err != nil || r.w != want {
		t.Fatalf("%s got (%s, %v), want (%s, nil)", who, name(r.w), r.err, want.Name)
	}
}

// stillWaiting checks that a background Acquire has not returned.
func stillWaiting(t *testing.T, ch <-chan result) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("Acquire returned (%v, %v), want it still waiting", name(r.w), r.err)
	case <-time.After(50 * time.Millisecond):
	}
}

func name(w *Worker) string {
	if w == nil {
		return "<nil>"
	}
	return w.Name
}

// checkIdle checks the pool is back to rest and every worker's whole
// capacity can be acquired again.
func checkIdle(t *testing.T, p *Pool) {
	t.Helper()
	if got, want := p.Stats(), (Stats{Workers: len(p.Workers())}); got != want {
		t.Fatalf("Stats() = %+v, want %+v", got, want)
	}
	n := len(p.Workers()) * p.opt.Capacity
	held := make([]*Worker, 0, n)
	for i := 0; i < n; i++ {
		held = append(held, acquire(t, p))
	}
	for _, w := range held {
		p.Release(w)
	}
	if got, want := p.Stats().Outstanding, 0; got != want {
		t.Fatalf("Stats().Outstanding after releasing all = %d, want %d", got, want)
	}
}

func TestScan(t *testing.T) {
	tests := []struct {
		name    string
		sockets []string // socket files
		files   []string // regular files
		dirs    []string
		want    []string
	}{
		{name: "empty", want: []string{}},
		{name: "one", sockets: []string{"1.sock"}, want: []string{"1"}},
		{
			name:    "numeric order",
			sockets: []string{"10.sock", "2.sock", "1.sock", "33.sock", "3.sock"},
			want:    []string{"1", "2", "3", "10", "33"},
		},
		{
			name:    "regular files ignored",
			sockets: []string{"2.sock"},
			files:   []string{"1.sock", "3.sock", "notes.txt"},
			want:    []string{"2"},
		},
		{
			name:  "directory named N.sock ignored",
			dirs:  []string{"4.sock"},
			files: []string{"5"},
			want:  []string{},
		},
		{
			name:    "other socket names ignored",
			sockets: []string{"1.sock", "ctl.sock", ".sock", "2.socket", "3.sock.old", "x4.sock", "5", "0.sock", "06.sock", "+7.sock"},
			want:    []string{"1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newSockDir(t)
			for _, s := range tt.sockets {
				d.listen(s)
			}
			for _, f := range tt.files {
				if err := os.WriteFile(filepath.Join(d.dir, f), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			for _, f := range tt.dirs {
				if err := os.Mkdir(filepath.Join(d.dir, f), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			p := newPool(t, d, Options{})
			if got := p.Workers(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Workers() = %q, want %q", got, tt.want)
			}
			if got, want := p.Stats().Workers, len(tt.want); got != want {
				t.Errorf("Stats().Workers = %d, want %d", got, want)
			}
			// A second scan of the same directory changes nothing.
			if err := p.Scan(); err != nil {
				t.Fatalf("second Scan() = %v, want nil", err)
			}
			if got := p.Workers(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Workers() after second Scan = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestScanMissingDir(t *testing.T) {
	p := New(Options{Dir: filepath.Join(t.TempDir(), "absent")})
	if err := p.Scan(); err != nil {
		t.Fatalf("Scan() = %v, want nil for a directory not made yet", err)
	}
	if got, want := p.Workers(), []string{}; !reflect.DeepEqual(got, want) {
		t.Errorf("Workers() = %q, want %q", got, want)
	}
}

func TestScanChanges(t *testing.T) {
	tests := []struct {
		name           string
		before         []string
		remove         []string
		add            []string
		want           []string
		wantAcquirable []string // Acquire with QueueLength 0 gets exactly these
	}{
		{name: "remove one", before: []string{"1", "2", "3"}, remove: []string{"2"}, want: []string{"1", "3"}},
		{name: "remove all", before: []string{"1", "2"}, remove: []string{"1", "2"}, want: []string{}},
		{name: "add one", before: []string{"1", "3"}, add: []string{"2"}, want: []string{"1", "2", "3"}},
		{name: "add after 9", before: []string{"9"}, add: []string{"10", "11"}, want: []string{"9", "10", "11"}},
		{name: "replace", before: []string{"1", "2"}, remove: []string{"1"}, add: []string{"12"}, want: []string{"2", "12"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newSockDir(t)
			d.add(tt.before...)
			p := newPool(t, d, Options{Capacity: 1})
			for _, n := range tt.remove {
				d.remove(n)
			}
			d.add(tt.add...)
			if err := p.Scan(); err != nil {
				t.Fatalf("Scan() = %v, want nil", err)
			}
			if got := p.Workers(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Workers() = %q, want %q", got, tt.want)
			}
			// Exactly the listed workers take requests.
			got := []string{}
			for {
				w, err := p.Acquire(context.Background())
				if errors.Is(err, ErrQueueFull) {
					break
				}
				if err != nil {
					t.Fatalf("Acquire() error = %v", err)
				}
				got = append(got, w.Name)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("workers acquired = %q, want %q", got, tt.want)
			}
		})
	}
}

// A worker whose socket is removed keeps its outstanding requests, takes
// no new ones, and closes its idle connections once the last is released.
func TestScanDrain(t *testing.T) {
	tests := []struct {
		name string
		held int // requests outstanding when the socket goes
	}{
		{name: "idle", held: 0},
		{name: "one outstanding", held: 1},
		{name: "two outstanding", held: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newSockDir(t)
			d.add("1")
			p := newPool(t, d, Options{Capacity: 2})
			w := worker(t, p, "1")
			c, err := w.Conn(context.Background())
			if err != nil {
				t.Fatalf("Conn() error = %v", err)
			}
			c.Put()
			for i := 0; i < tt.held; i++ {
				if got := acquire(t, p); got != w {
					t.Fatalf("Acquire() = %s, want 1", name(got))
				}
			}

			d.stop(p, "1")
			if got, want := p.Workers(), []string{}; !reflect.DeepEqual(got, want) {
				t.Errorf("Workers() after removal = %q, want %q", got, want)
			}
			if _, err := p.Acquire(context.Background()); !errors.Is(err, ErrQueueFull) {
				t.Errorf("Acquire() on a pool of one gone worker: error = %v, want %v", err, ErrQueueFull)
			}
			for left := tt.held; ; left-- {
				if got := outstanding(p, w); got != left {
					t.Fatalf("outstanding = %d, want %d", got, left)
				}
				if got, want := isClosed(c), left == 0; got != want {
					t.Fatalf("with %d outstanding: idle conn closed = %v, want %v", left, got, want)
				}
				if left == 0 {
					break
				}
				p.Release(w)
			}
			p.mu.Lock()
			idle := len(w.idle)
			p.mu.Unlock()
			if idle != 0 {
				t.Errorf("idle conns after drain = %d, want 0", idle)
			}
		})
	}
}

func TestAcquireLeastOutstanding(t *testing.T) {
	tests := []struct {
		name        string
		capacity    int
		outstanding []int // of workers "1", "2", ...
		next        int   // where the search starts
		want        string
		wantErr     error
	}{
		{name: "all idle", capacity: 2, outstanding: []int{0, 0, 0}, want: "1"},
		{name: "all idle from next", capacity: 2, outstanding: []int{0, 0, 0}, next: 2, want: "3"},
		{name: "fewest", capacity: 4, outstanding: []int{3, 1, 2}, want: "2"},
		{name: "fewest before next", capacity: 4, outstanding: []int{0, 1, 2}, next: 1, want: "1"},
		{name: "idle last", capacity: 4, outstanding: []int{3, 3, 0}, want: "3"},
		{name: "full skipped", capacity: 2, outstanding: []int{2, 1, 2}, want: "2"},
		{name: "busy tie takes first from next", capacity: 3, outstanding: []int{1, 2, 1}, next: 1, want: "3"},
		{name: "all full", capacity: 2, outstanding: []int{2, 2, 2}, wantErr: ErrQueueFull},
		{name: "capacity 1", capacity: 1, outstanding: []int{1, 0}, want: "2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newSockDir(t)
			for i := range tt.outstanding {
				d.add(fmt.Sprint(i + 1))
			}
			p := newPool(t, d, Options{Capacity: tt.capacity})
			p.mu.Lock()
			for i, n := range tt.outstanding {
				p.workers[i].outstanding = n
			}
			p.next = tt.next
			p.mu.Unlock()

			w, err := p.Acquire(context.Background())
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Acquire() error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got := w.Name; got != tt.want {
				t.Errorf("Acquire() = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestAcquireCapacity(t *testing.T) {
	tests := []struct {
		name     string
		workers  []string
		capacity int
	}{
		{name: "1x1", workers: []string{"1"}, capacity: 1},
		{name: "3x2", workers: []string{"1", "2", "3"}, capacity: 2},
		{name: "2x4", workers: []string{"1", "2"}, capacity: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newSockDir(t)
			d.add(tt.workers...)
			p := newPool(t, d, Options{Capacity: tt.capacity, QueueLength: 1})
			per := map[string]int{}
			var held []*Worker
			for i := 0; i < len(tt.workers)*tt.capacity; i++ {
				w := acquire(t, p)
				per[w.Name]++
				held = append(held, w)
			}
			for _, n := range tt.workers {
				if got, want := per[n], tt.capacity; got != want {
					t.Errorf("slots on worker %s = %d, want %d", n, got, want)
				}
			}
			if got, want := p.Stats(), (Stats{Workers: len(tt.workers), Outstanding: len(held)}); got != want {
				t.Errorf("Stats() = %+v, want %+v", got, want)
			}

			ch := acquireAsync(t, p, context.Background(), 1)
			stillWaiting(t, ch)
			freed := held[len(held)/2]
			p.Release(freed)
			handed(t, ch, freed, "waiter")
			for _, w := range held {
				p.Release(w)
			}
			checkIdle(t, p)
		})
	}
}

// Release hands the freed slot to the first waiter that may use it.
func TestAcquireFIFO(t *testing.T) {
	tests := []struct {
		name    string
		waiters int
	}{
		{name: "two", waiters: 2},
		{name: "five", waiters: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newSockDir(t)
			d.add("1")
			p := newPool(t, d, Options{Capacity: 1, QueueLength: tt.waiters})
			w := acquire(t, p)
			chs := make([]<-chan result, tt.waiters)
			for i := range chs {
				chs[i] = acquireAsync(t, p, context.Background(), i+1)
			}
			for i := range chs {
				p.Release(w)
				handed(t, chs[i], w, fmt.Sprintf("waiter %d", i))
				for _, later := range chs[i+1:] {
					select {
					case r := <-later:
						t.Fatalf("a later waiter got (%s, %v) before waiter %d was done", name(r.w), r.err, i)
					default:
					}
				}
				if got, want := p.Stats().Queued, tt.waiters-i-1; got != want {
					t.Errorf("Stats().Queued after serving waiter %d = %d, want %d", i, got, want)
				}
			}
			p.Release(w)
			checkIdle(t, p)
		})
	}

	t.Run("first waiter that may use it", func(t *testing.T) {
		d := newSockDir(t)
		d.add("1", "2")
		p := newPool(t, d, Options{Capacity: 1, QueueLength: 2})
		w1, w2 := acquire(t, p), acquire(t, p)
		first := acquireAsync(t, p, context.Background(), 1, w1) // may not use 1
		second := acquireAsync(t, p, context.Background(), 2)
		p.Release(w1)
		handed(t, second, w1, "second waiter")
		stillWaiting(t, first)
		p.Release(w2)
		handed(t, first, w2, "first waiter")
		p.Release(w1)
		p.Release(w2)
		checkIdle(t, p)
	})
}

func TestAcquireQueueErrors(t *testing.T) {
	tests := []struct {
		name         string
		queueLength  int
		queueTimeout time.Duration
		ahead        int           // waiters already queued
		cancelAfter  time.Duration // cancel the tested call's context
		ctxTimeout   time.Duration
		want         error
		atLeast      time.Duration
		atMost       time.Duration
	}{
		{name: "queue length 0", queueLength: 0, want: ErrQueueFull, atMost: time.Second},
		{name: "queue length 1 full", queueLength: 1, ahead: 1, want: ErrQueueFull, atMost: time.Second},
		{name: "queue length 3 full", queueLength: 3, ahead: 3, want: ErrQueueFull, atMost: time.Second},
		{name: "queue timeout", queueLength: 1, queueTimeout: 100 * time.Millisecond, want: ErrQueueTimeout, atLeast: 100 * time.Millisecond},
		{name: "queue timeout behind another", queueLength: 2, ahead: 1, queueTimeout: time.Second, want: ErrQueueTimeout, atLeast: time.Second},
		{name: "ctx canceled", queueLength: 1, cancelAfter: 50 * time.Millisecond, want: context.Canceled, atLeast: 50 * time.Millisecond, atMost: 5 * time.Second},
		{name: "ctx canceled behind another", queueLength: 2, ahead: 1, cancelAfter: 50 * time.Millisecond, want: context.Canceled, atLeast: 50 * time.Millisecond, atMost: 5 * time.Second},
		{name: "ctx deadline", queueLength: 1, ctxTimeout: 50 * time.Millisecond, want: context.DeadlineExceeded, atLeast: 50 * time.Millisecond, atMost: 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newSockDir(t)
			d.add("1", "2")
			timeout := tt.queueTimeout
			if timeout == 0 {
				timeout = 30 * time.Second
			}
			p := newPool(t, d, Options{Capacity: 2, QueueLength: tt.queueLength, QueueTimeout: timeout})
			var held []*Worker
			for i := 0; i < 4; i++ {
				held = append(held, acquire(t, p))
			}
			aheadCtx, cancelAhead := context.WithCancel(context.Background())
			defer cancelAhead()
			var aheads []<-chan result
			for i := 0; i < tt.ahead; i++ {
				aheads = append(aheads, acquireAsync(t, p, aheadCtx, i+1))
			}

			start := time.Now()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.ctxTimeout > 0 {
				ctx, cancel = context.WithTimeout(ctx, tt.ctxTimeout)
				defer cancel()
			}
			if tt.cancelAfter > 0 {
				time.AfterFunc(tt.cancelAfter, cancel)
			}
			w, err := p.Acquire(ctx)
			took := time.Since(start)
			if !errors.Is(err, tt.want) || w != nil {
				t.Fatalf("Acquire() = (%s, %v), want (<nil>, %v)", name(w), err, tt.want)
			}
			if took < tt.atLeast {
				t.Errorf("Acquire() returned after %v, want at least %v", took, tt.atLeast)
			}
			if tt.atMost > 0 && took > tt.atMost {
				t.Errorf("Acquire() returned after %v, want at most %v", took, tt.atMost)
			}
			// (Waiters ahead time out on their own when the queue timeout
			// is what is tested.)
			if got, want := p.Stats().Queued, tt.ahead; tt.want != ErrQueueTimeout && got != want {
				t.Errorf("Stats().Queued after the error = %d, want %d (the waiters ahead)", got, want)
			}

			// The waiters ahead are still served, in order.
			for i, ch := range aheads {
				if tt.want == ErrQueueTimeout {
					// They timed out too (they queued first).
					if r := recv(t, ch); !errors.Is(r.err, ErrQueueTimeout) {
						t.Fatalf("waiter %d ahead: error = %v, want %v", i, r.err, ErrQueueTimeout)
					}
					continue
				}
				p.Release(held[i])
				handed(t, ch, held[i], fmt.Sprintf("waiter %d ahead", i))
			}
			for _, w := range held {
				p.Release(w)
			}
			checkIdle(t, p)
		})
	}
}

// A waiter that gives up just as it is handed a slot must give it back.
func TestAcquireCancelRace(t *testing.T) {
	d := newSockDir(t)
	d.add("1")
	p := newPool(t, d, Options{Capacity: 1, QueueLength: 1})
	for i := 0; i < 200; i++ {
		w := acquire(t, p)
		ctx, cancel := context.WithCancel(context.Background())
		ch := acquireAsync(t, p, ctx, 1)
		go cancel()
		p.Release(w)
		r := recv(t, ch)
		switch {
		case r.err == nil:
			p.Release(r.w)
		case !errors.Is(r.err, context.Canceled):
			t.Fatalf("Acquire() error = %v, want nil or %v", r.err, context.Canceled)
		}
		if got, want := p.Stats(), (Stats{Workers: 1}); got != want {
			t.Fatalf("round %d: Stats() = %+v, want %+v", i, got, want)
		}
	}
	checkIdle(t, p)
}

func TestAcquireExclude(t *testing.T) {
	tests := []struct {
		name     string
		workers  []string
		capacity int
		busy     []string // workers held at capacity first
		exclude  []string
		want     string
		wantErr  error
	}{
		{name: "only worker excluded", workers: []string{"1"}, exclude: []string{"1"}, wantErr: ErrUnreachable},
		{name: "only worker excluded and busy", workers: []string{"1"}, busy: []string{"1"}, exclude: []string{"1"}, wantErr: ErrUnreachable},
		{name: "all excluded", workers: []string{"1", "2"}, exclude: []string{"2", "1"}, wantErr: ErrUnreachable},
		{name: "other worker", workers: []string{"1", "2"}, exclude: []string{"1"}, want: "2"},
		{name: "other worker, first", workers: []string{"1", "2"}, exclude: []string{"2"}, want: "1"},
		{name: "other worker full", workers: []string{"1", "2"}, capacity: 3, busy: []string{"2"}, exclude: []string{"1"}, wantErr: ErrQueueTimeout},
		{name: "one of three left", workers: []string{"1", "2", "3"}, exclude: []string{"1", "3"}, want: "2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newSockDir(t)
			d.add(tt.workers...)
			const queueTimeout = time.Second
			p := newPool(t, d, Options{Capacity: tt.capacity, QueueLength: 1, QueueTimeout: queueTimeout})
			var held []*Worker
			for _, n := range tt.busy {
				w := worker(t, p, n)
				hold(p, w, p.opt.Capacity)
				for i := 0; i < p.opt.Capacity; i++ {
					held = append(held, w)
				}
			}
			var exclude []*Worker
			for _, n := range tt.exclude {
				exclude = append(exclude, worker(t, p, n))
			}
			start := time.Now()
			w, err := p.Acquire(context.Background(), exclude...)
			took := time.Since(start)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Acquire(%q) error = %v, want %v", tt.exclude, err, tt.wantErr)
			}
			if errors.Is(err, ErrUnreachable) && took >= queueTimeout/2 {
				t.Errorf("Acquire(%q) took %v, want ErrUnreachable at once", tt.exclude, took)
			}
			if err == nil {
				if got := w.Name; got != tt.want {
					t.Errorf("Acquire(%q) = %s, want %s", tt.exclude, got, tt.want)
				}
				p.Release(w)
			}
			for _, w := range held {
				p.Release(w)
			}
			checkIdle(t, p)
		})
	}
}

func TestMarkDown(t *testing.T) {
	const downFor = 150 * time.Millisecond
	t.Run("skipped while down, used after", func(t *testing.T) {
		d := newSockDir(t)
		d.add("1", "2")
		p := newPool(t, d, Options{Capacity: 1, DownFor: downFor})
		p.MarkDown(worker(t, p, "1"))
		start := time.Now()
		for i := 0; i < 4; i++ {
			w := acquire(t, p)
			if time.Since(start) < downFor*2/3 {
				if got, want := w.Name, "2"; got != want {
					t.Errorf("pick %d while 1 is down = %s, want %s", i, got, want)
				}
			}
			p.Release(w)
		}
		time.Sleep(downFor + 20*time.Millisecond)
		got := map[string]bool{}
		for i := 0; i < 4; i++ {
			w := acquire(t, p)
			got[w.Name] = true
			p.Release(w)
		}
		if want := map[string]bool{"1": true, "2": true}; !reflect.DeepEqual(got, want) {
			t.Errorf("workers picked after DownFor = %v, want %v", got, want)
		}
	})

	tests := []struct {
		name     string
		workers  []string
		capacity int
		down     []string
		want     []string // what waiters get, in order
	}{
		{name: "only worker down", workers: []string{"1"}, capacity: 1, down: []string{"1"}, want: []string{"1"}},
		{name: "both down", workers: []string{"1", "2"}, capacity: 1, down: []string{"1", "2"}, want: []string{"1", "2"}},
		{name: "capacity for two waiters", workers: []string{"1"}, capacity: 2, down: []string{"1"}, want: []string{"1", "1"}},
	}
	for _, tt := range tests {
		t.Run("waiters served after DownFor/"+tt.name, func(t *testing.T) {
			d := newSockDir(t)
			d.add(tt.workers...)
			p := newPool(t, d, Options{Capacity: tt.capacity, QueueLength: len(tt.want), DownFor: downFor})
			start := time.Now()
			for _, n := range tt.down {
				p.MarkDown(worker(t, p, n))
			}
			var chs []<-chan result
			for i := range tt.want {
				chs = append(chs, acquireAsync(t, p, context.Background(), i+1))
			}
			var got []string
			for _, ch := range chs {
				r := recv(t, ch)
				if r.err != nil {
					t.Fatalf("waiter error = %v, want nil", r.err)
				}
				got = append(got, r.w.Name)
				defer p.Release(r.w)
			}
			if took := time.Since(start); took < downFor {
				t.Errorf("waiters served after %v, want at least DownFor %v", took, downFor)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("waiters got %q, want %q", got, tt.want)
			}
		})
	}

	t.Run("down worker refused when queue is 0", func(t *testing.T) {
		d := newSockDir(t)
		d.add("1")
		p := newPool(t, d, Options{Capacity: 1, DownFor: downFor})
		p.MarkDown(worker(t, p, "1"))
		if _, err := p.Acquire(context.Background()); !errors.Is(err, ErrQueueFull) {
			t.Errorf("Acquire() error = %v, want %v", err, ErrQueueFull)
		}
	})
}

// Ties between equally idle workers rotate instead of always going to the
// first.
func TestSpreadTies(t *testing.T) {
	tests := []struct {
		name    string
		workers []string
		hold    []string // held for the whole test
		want    []string // successive picks
	}{
		{name: "three idle", workers: []string{"1", "2", "3"}, want: []string{"1", "2", "3", "1", "2", "3", "1"}},
		{name: "two idle", workers: []string{"1", "2"}, want: []string{"1", "2", "1", "2"}},
		{name: "one", workers: []string{"1"}, want: []string{"1", "1"}},
		{name: "first busy", workers: []string{"1", "2", "3"}, hold: []string{"1"}, want: []string{"2", "3", "2", "3", "2", "3"}},
		{name: "middle busy", workers: []string{"1", "2", "3"}, hold: []string{"2"}, want: []string{"1", "3", "1", "3", "1", "3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newSockDir(t)
			d.add(tt.workers...)
			p := newPool(t, d, Options{Capacity: 2})
			for _, n := range tt.hold {
				hold(p, worker(t, p, n), 1)
			}
			var got []string
			for range tt.want {
				w := acquire(t, p)
				got = append(got, w.Name)
				p.Release(w)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("picks = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestConcurrent(t *testing.T) {
	const (
		goroutines = 50
		rounds     = 200
	)
	d := newSockDir(t)
	d.add("1", "2", "3")
	p := newPool(t, d, Options{Capacity: 2, QueueLength: goroutines, QueueTimeout: time.Minute, DownFor: 5 * time.Millisecond})

	// Worker 4 comes and goes.
	var mu sync.Mutex
	var ln4 *net.UnixListener
	toggle := func() {
		mu.Lock()
		defer mu.Unlock()
		if ln4 != nil {
			ln4.Close() // removes 4.sock
			ln4 = nil
		} else {
			ln, err := listenUnix(filepath.Join(d.dir, "4.sock"))
			if err != nil {
				t.Errorf("listen 4.sock: %v", err)
				return
			}
			ln4 = ln
		}
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		if ln4 != nil {
			ln4.Close()
		}
	})

	var seen sync.Map // every *Worker handed out
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, 1))
			for i := 0; i < rounds; i++ {
				switch r.IntN(20) {
				case 0:
					toggle()
					if err := p.Scan(); err != nil {
						t.Errorf("Scan() = %v", err)
						return
					}
				case 1:
					p.Stats()
					p.Workers()
				}
				w, err := p.Acquire(context.Background())
				if err != nil {
					t.Errorf("Acquire() error = %v", err)
					return
				}
				seen.Store(w, true)
				if r.IntN(4) == 0 {
					if c, err := w.Conn(context.Background()); err != nil {
						p.MarkDown(w)
					} else if r.IntN(2) == 0 {
						c.Put()
					} else {
						c.Close()
						p.Stale(w)
					}
				}
				p.Release(w)
			}
		}(uint64(g))
	}
	wg.Wait()

	if got, want := p.Stats(), (Stats{Workers: len(p.Workers())}); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
	p.mu.Lock()
	seen.Range(func(k, _ any) bool {
		if w := k.(*Worker); w.outstanding != 0 {
			t.Errorf("worker %s (gone %v): outstanding = %d, want 0", w.Name, w.gone, w.outstanding)
		}
		return true
	})
	p.mu.Unlock()
}
