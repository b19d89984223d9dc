package logging

import (
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Async passes log lines to its writer from a goroutine of its own, so
// that a reader that cannot keep up (a journal under load, a pipe whose
// reader is busy) never holds the code that logs: a request's answer
// waits for nothing but the client. While more than its queue of lines
// wait, new ones are dropped and counted, and OnDrop hears how many, at
// most once a second.
//
// Lines waiting together go out in one write of at most PIPE_BUF bytes,
// so that no write interleaves with another process's on the same pipe.
type Async struct {
	w     io.Writer
	lines chan *[]byte
	stop  chan struct{} // closed by Close
	done  chan struct{} // closed when what was queued is out
	once  sync.Once

	dropped atomic.Uint64
	// OnDrop, when set before the first Write, is told how many lines
	// were dropped since it was last told.
	OnDrop func(n uint64)
}

// pipeBuf is the most a write to a pipe may hold and stay whole.
const pipeBuf = 4096

var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// NewAsync returns an Async writing to w that holds up to max lines.
func NewAsync(w io.Writer, max int) *Async {
	a := &Async{w: w, lines: make(chan *[]byte, max), stop: make(chan struct{}), done: make(chan struct{})}
	go a.drain()
	return a
}

// Write queues a copy of p, one log line, or drops it when the queue is
// full. It never blocks, and never fails.
func (a *Async) Write(p []byte) (int, error) {
	b := lineBufs.Get().(*[]byte)
	*b = append((*b)[:0], p...)
	select {
	case a.lines <- b:
	default:
		a.dropped.Add(1)
		lineBufs.Put(b)
	}
	return len(p), nil
}

// Close writes what is queued, then stops; lines written after it are
// queued but never written.
func (a *Async) Close() error {
	a.once.Do(func() { close(a.stop) })
	<-a.done
	return nil
}

// Dropped is how many lines were dropped so far.
func (a *Async) Dropped() uint64 { return a.dropped.Load() }

// Unwrap is the writer the lines go to.
func (a *Async) Unwrap() io.Writer { return a.w }

func (a *Async) drain() {
	defer close(a.done)
	out := make([]byte, 0, pipeBuf)
	var told uint64
	var toldAt time.Time
	var held *[]byte // a line that did not fit the last write
	for {
		line := held
		held = nil
		if line == nil {
			select {
			case line = <-a.lines:
			case <-a.stop:
				select {
				case line = <-a.lines:
				default:
					return // stopped, and nothing is left
				}
			}
		}
		out = append(out[:0], *line...)
		lineBufs.Put(line)
	gather:
		for len(out) < pipeBuf {
			select {
			case next := <-a.lines:
				if len(out)+len(*next) > pipeBuf {
					held = next
					break gather
				}
				out = append(out, *next...)
				lineBufs.Put(next)
			default:
				break gather
			}
		}
		a.w.Write(out)
		if d := a.dropped.Load(); d > told && a.OnDrop != nil && time.Since(toldAt) >= time.Second {
			a.OnDrop(d - told)
			told, toldAt = d, time.Now()
		}
	}
}
