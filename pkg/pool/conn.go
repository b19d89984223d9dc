package pool

import (
	"bufio"
	"context"
	"net"
)

// Conn is one connection to a worker. A worker keeps at most Capacity of
// them open, one per request it can serve at once.
type Conn struct {
	net.Conn
	R *bufio.Reader
	// Reused says the connection served a request before, so a failure on
	// it may only mean the worker's Python process was restarted since.
	Reused bool
	w      *Worker
}

var dialer net.Dialer

// Conn returns an idle connection to w, or dials a new one. The caller
// holds a slot from Acquire.
func (w *Worker) Conn(ctx context.Context) (*Conn, error) {
	p := w.pool
	p.mu.Lock()
	if n := len(w.idle); n > 0 {
		c := w.idle[n-1]
		w.idle = w.idle[:n-1]
		p.mu.Unlock()
		c.Reused = true
		return c, nil
	}
	p.mu.Unlock()
	nc, err := dialer.DialContext(ctx, "unix", w.Path)
	if err != nil {
		return nil, err
	}
	return &Conn{Conn: nc, R: bufio.NewReaderSize(nc, 64<<10), w: w}, nil
}

// Put returns a healthy connection for reuse.
func (c *Conn) Put() {
	p := c.w.pool
	p.mu.Lock()
	if p.closed || c.w.gone || !c.w.downUntil.IsZero() || len(c.w.idle) >= p.opt.Capacity {
		p.mu.Unlock()
		c.Close()
		return
	}
	c.w.idle = append(c.w.idle, c)
	p.mu.Unlock()
}

func (w *Worker) closeIdleLocked() {
	for _, c := range w.idle {
		c.Close()
	}
	w.idle = nil
}
