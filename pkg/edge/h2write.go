package edge

import (
	"net"
	"sync"
	"time"
)

// h2Writer gathers what net/http's HTTP/2 server writes to a connection
// and writes it from one goroutine of the connection's own.
//
// The server buffers its frames in a 4 KiB bufio.Writer (a constant of
// net/http) and writes a frame that does not fit, such as the DATA frame
// of any answer of 4 KiB or more, straight to the connection from a new
// goroutine each time: one write system call and one TLS record a frame,
// and a fresh goroutine that grows its stack to encrypt (a profile of
// h2load on a 4 KiB file: 12% of edged's CPU in morestack/copystack, 30%
// under writeFrameAsync). Here a write only appends to the pending
// bytes; the writer goroutine, its stack grown once, sends all that is
// pending in one TLS write, so the frames of many streams go out
// together while the last write is on its way, as nginx gathers them.
//
// A write error ends the connection: the next Write returns it. A write
// that makes no progress for limits.send_timeout fails. Every write comes
// from net/http's writeFrameAsync goroutines (a frame that fits the
// server's buffer stays there; its flushes are async too), so a Write
// that waits for room never holds the server's own loop.
type h2Writer struct {
	conn    net.Conn // the *tls.Conn
	timeout func() time.Duration

	mu      sync.Mutex
	room    sync.Cond // pending shrank, or err is set
	pending []byte
	spare   []byte
	closing bool
	last    time.Time // when closing: the deadline of every write left
	err     error
	kick    chan struct{}
}

// h2MaxPending is how much may wait to be written before Write blocks:
// the server's flow control bounds what it sends, this bounds the copy.
const h2MaxPending = 256 << 10

// h2KeepBuffer is the largest buffer a writer keeps while idle.
const h2KeepBuffer = 64 << 10

func newH2Writer(conn net.Conn, timeout func() time.Duration) *h2Writer {
	w := &h2Writer{conn: conn, timeout: timeout, kick: make(chan struct{}, 1)}
	w.room.L = &w.mu
	go w.run()
	return w
}

// Write queues p (copied) and returns at once, unless too much is
// already pending or the connection has failed.
func (w *h2Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	for w.err == nil && !w.closing && len(w.pending) > h2MaxPending {
		w.room.Wait()
	}
	if w.err != nil || w.closing {
		err := w.err
		if err == nil {
			err = net.ErrClosed
		}
		w.mu.Unlock()
		return 0, err
	}
	w.pending = append(w.pending, p...)
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (w *h2Writer) run() {
	for range w.kick {
		w.mu.Lock()
		for len(w.pending) > 0 && w.err == nil {
			out := w.pending
			w.pending, w.spare = w.spare[:0], nil
			dl := time.Now().Add(w.timeout())
			if w.closing && w.last.Before(dl) {
				dl = w.last
			}
			// Set under the lock, so that Close's shorter deadline,
			// set under it too, is never undone.
			w.conn.SetWriteDeadline(dl)
			w.mu.Unlock()
			_, err := w.conn.Write(out)
			w.mu.Lock()
			if err != nil {
				w.err = err
				w.pending = nil
			} else if cap(out) <= h2KeepBuffer {
				w.spare = out[:0]
			}
			w.room.Broadcast()
		}
		closing := w.closing
		w.mu.Unlock()
		if closing {
			w.conn.Close()
			return
		}
	}
}

// Close returns at once; the writer sends what is pending (a GOAWAY, the
// last answers) for at most wait, then closes the connection. It must not
// wait itself: net/http's Shutdown closes its idle connections one after
// the other, and clients that read nothing would hold it a wait each.
func (w *h2Writer) Close(wait time.Duration) error {
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		return nil
	}
	w.closing = true
	w.last = time.Now().Add(wait)
	w.conn.SetWriteDeadline(w.last)
	w.room.Broadcast() // a Write waiting for room gives up
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}: // wakes run to send the rest and close
	default:
	}
	return nil
}
