// Package pool is edged's view of the workers: which are up, how busy each
// is, and which gets the next request.
//
// A worker is a Unix socket named N.sock in the pool's socket directory;
// the pool follows that directory, so workers started or stopped by
// systemd (or by hand) join and leave without edged restarting. A request
// goes to the worker with the fewest outstanding requests among those with
// free capacity (1 for a sync worker, the thread count for threads). When
// every worker is full, requests wait in a bounded FIFO queue.
package pool

import (
	"context"
	"errors"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/edged/edged/pkg/config"
)

// Errors from Acquire; the edge answers both with 503.
var (
	ErrQueueFull    = errors.New("every worker is busy and the queue is full")
	ErrQueueTimeout = errors.New("every worker stayed busy for the whole queue timeout")
	// ErrUnreachable means every live worker was already tried for this
	// request and refused it.
	ErrUnreachable = errors.New("no worker could be reached")
)

// Options configure a Pool.
type Options struct {
	Dir          string        // socket directory
	Capacity     int           // requests one worker serves at once
	QueueLength  int           // waiting requests beyond capacity
	QueueTimeout time.Duration // how long one request may wait
	// DownFor is how long a worker that refused a connection is skipped.
	DownFor time.Duration
	// Probe, when set, must succeed before a newly found worker gets
	// requests: a worker whose socket exists may still be importing its
	// app. It is retried until it succeeds or the socket goes away.
	Probe func(path string) error
}

// Pool is the set of workers. It is safe for concurrent use.
type Pool struct {
	opt Options

	mu      sync.Mutex
	workers []*Worker // sorted by name; only live ones
	next    int       // where the next search starts, to spread ties
	waiters []*waiter // FIFO
	closed  bool      // keep no connection idle any more
}

// Worker is one workerd instance as edged sees it.
type Worker struct {
	Name string // the instance, e.g. "3"
	Path string // its socket

	pool *Pool
	// Guarded by pool.mu.
	outstanding int
	idle        []*Conn
	gone        bool // socket removed: drain, then forget
	ready       bool // Probe succeeded (or there is none)
	downUntil   time.Time
}

type waiter struct {
	ch      chan *Worker // buffered 1
	exclude []*Worker
}

// New returns an empty pool; call Scan or Watch to find workers.
func New(opt Options) *Pool {
	if opt.Capacity < 1 {
		opt.Capacity = 1
	}
	if opt.DownFor == 0 {
		opt.DownFor = time.Second
	}
	return &Pool{opt: opt}
}

// SetQueue changes the queue's bounds for requests that arrive from now on.
func (p *Pool) SetQueue(length int, timeout time.Duration) {
	p.mu.Lock()
	p.opt.QueueLength, p.opt.QueueTimeout = length, timeout
	p.mu.Unlock()
}

// Stats is a snapshot for status lines.
type Stats struct {
	Workers     int // ready to serve
	Starting    int // found, not answering yet
	Outstanding int
	Queued      int
}

// Stats returns the current counts.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Stats{Queued: len(p.waiters)}
	for _, w := range p.workers {
		s.Outstanding += w.outstanding
		if w.ready {
			s.Workers++
		} else {
			s.Starting++
		}
	}
	return s
}

// Workers returns the names of the live workers.
func (p *Pool) Workers() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	names := make([]string, len(p.workers))
	for i, w := range p.workers {
		names[i] = w.Name
	}
	return names
}

// Acquire reserves a slot on a worker other than those in exclude, waiting
// in the queue when all are full. Every successful Acquire must be paired
// with a Release.
func (p *Pool) Acquire(ctx context.Context, exclude ...*Worker) (*Worker, error) {
	p.mu.Lock()
	if w := p.pickLocked(exclude); w != nil {
		w.outstanding++
		p.mu.Unlock()
		return w, nil
	}
	if len(exclude) > 0 && p.allExcludedLocked(exclude) {
		p.mu.Unlock()
		return nil, ErrUnreachable
	}
	if len(p.waiters) >= p.opt.QueueLength {
		p.mu.Unlock()
		return nil, ErrQueueFull
	}
	wt := &waiter{ch: make(chan *Worker, 1), exclude: exclude}
	p.waiters = append(p.waiters, wt)
	timeout := p.opt.QueueTimeout
	p.mu.Unlock()

	t := time.NewTimer(timeout)
	defer t.Stop()
	var err error
	select {
	case w := <-wt.ch:
		return w, nil
	case <-t.C:
		err = ErrQueueTimeout
	case <-ctx.Done():
		err = ctx.Err()
	}
	p.mu.Lock()
	for i, x := range p.waiters {
		if x == wt {
			p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
			p.mu.Unlock()
			return nil, err
		}
	}
	p.mu.Unlock()
	// Handed a worker just as we gave up: give the slot back.
	p.Release(<-wt.ch)
	return nil, err
}

// Release gives back a slot taken by Acquire, handing it straight to the
// first waiter that may use it.
func (p *Pool) Release(w *Worker) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w.outstanding--
	if w.gone && w.outstanding == 0 {
		w.closeIdleLocked()
	}
	p.dispatchLocked()
}

// dispatchLocked hands free slots to waiters in order. A waiter that
// excludes no worker and finds none free means no slot is free at all.
func (p *Pool) dispatchLocked() {
	for i := 0; i < len(p.waiters); {
		wt := p.waiters[i]
		w := p.pickLocked(wt.exclude)
		if w == nil {
			if len(wt.exclude) == 0 {
				return
			}
			i++
			continue
		}
		w.outstanding++
		wt.ch <- w
		p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
	}
}

// pickLocked returns the usable worker with the fewest outstanding
// requests, or nil when all are full, down or excluded.
func (p *Pool) pickLocked(exclude []*Worker) *Worker {
	n := len(p.workers)
	if n == 0 {
		return nil
	}
	var best *Worker
	bestAt := 0
	var now time.Time
	start := p.next % n
	for i := 0; i < n; i++ {
		at := (start + i) % n
		w := p.workers[at]
		if !w.ready || w.outstanding >= p.opt.Capacity || (best != nil && w.outstanding >= best.outstanding) {
			continue
		}
		if !w.downUntil.IsZero() {
			if now.IsZero() {
				now = time.Now()
			}
			if now.Before(w.downUntil) {
				continue
			}
			w.downUntil = time.Time{}
		}
		if excluded(w, exclude) {
			continue
		}
		best, bestAt = w, at
		if w.outstanding == 0 {
			break
		}
	}
	if best != nil {
		// Start the next search just past the pick, not past start: a
		// busy worker at start would otherwise hand its turn to the one
		// after it twice as often as to the others.
		p.next = bestAt + 1
	}
	return best
}

func (p *Pool) allExcludedLocked(exclude []*Worker) bool {
	for _, w := range p.workers {
		if !excluded(w, exclude) {
			return false
		}
	}
	return true
}

func excluded(w *Worker, ws []*Worker) bool {
	for _, x := range ws {
		if x == w {
			return true
		}
	}
	return false
}

// MarkDown skips w for a moment after it refused a connection: the socket
// file is there but no process listens, or systemd is starting it again.
func (p *Pool) MarkDown(w *Worker) {
	p.mu.Lock()
	w.downUntil = time.Now().Add(p.opt.DownFor)
	w.closeIdleLocked()
	p.mu.Unlock()
	// Waiters that found no worker get another look once it is back.
	time.AfterFunc(p.opt.DownFor, func() {
		p.mu.Lock()
		p.dispatchLocked()
		p.mu.Unlock()
	})
}

// Close lets go of every idle connection and keeps none from now on;
// requests still running finish on theirs. A stopping edged calls it
// first: a sync worker serves one connection at a time, so an idle one
// held by the old edged would keep the new edged's requests waiting.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, w := range p.workers {
		w.closeIdleLocked()
	}
}

// Stale drops w's idle connections after one of them turned out dead:
// the worker's Python process was restarted, so all of them are.
func (p *Pool) Stale(w *Worker) {
	p.mu.Lock()
	w.closeIdleLocked()
	p.mu.Unlock()
}

// Scan reads the socket directory and brings the worker set in line with
// it. A worker whose socket is gone gets no new requests and is dropped
// once its requests finish.
func (p *Pool) Scan() error {
	ents, err := os.ReadDir(p.opt.Dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	found := map[string]bool{}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".sock")
		if !ok || !instance(name) || e.Type()&os.ModeSocket == 0 {
			continue
		}
		found[name] = true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	kept := p.workers[:0]
	have := map[string]bool{}
	for _, w := range p.workers {
		if found[w.Name] {
			kept = append(kept, w)
			have[w.Name] = true
			continue
		}
		w.gone = true
		if w.outstanding == 0 {
			w.closeIdleLocked()
		}
	}
	changed := len(kept) != len(p.workers)
	for name := range found {
		if !have[name] {
			w := &Worker{Name: name, Path: config.WorkerSocket(p.opt.Dir, name), pool: p, ready: p.opt.Probe == nil}
			if !w.ready {
				go p.probe(w)
			}
			kept = append(kept, w)
			changed = true
		}
	}
	p.workers = kept
	if changed {
		sort.Slice(p.workers, func(i, j int) bool { return lessName(p.workers[i].Name, p.workers[j].Name) })
		p.dispatchLocked()
	}
	return nil
}

// probe retries Probe until the worker answers or is gone.
func (p *Pool) probe(w *Worker) {
	for {
		err := p.opt.Probe(w.Path)
		p.mu.Lock()
		if w.gone {
			p.mu.Unlock()
			return
		}
		if err == nil {
			w.ready = true
			p.dispatchLocked()
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		time.Sleep(250 * time.Millisecond)
	}
}

// instance says name is an instance number (the N of workerd@N): the
// socket directory may hold other sockets, which are not workers.
func instance(name string) bool {
	_, ok := config.Instance(name)
	return ok
}

// lessName orders "2" before "10".
func lessName(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// Watch rescans the directory every interval until ctx ends.
func (p *Pool) Watch(ctx context.Context, interval time.Duration, onErr func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := p.Scan(); err != nil && onErr != nil {
			onErr(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
