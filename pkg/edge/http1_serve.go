package edge

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// serveRequest runs the handler for r and finishes its answer; false
// when the connection is done.
func (c *h1Conn) serveRequest(r *http.Request) bool {
	w := &c.resp
	*w = h1Response{c: c, req: r, header: make(http.Header), contentLength: -1, head: c.head[:0]}
	c.srv.handler.ServeHTTP(w, r)
	w.finish()
	c.head = w.head
	if c.watching {
		c.stopWatch()
	}
	c.ctx.cancel() // as net/http: a request's context ends with it
	if w.wroteDeadline {
		c.tc.SetWriteDeadline(time.Time{})
	}
	reuse := w.reusable()
	if w.lingering {
		// The client may still be sending a body edged will not read:
		// half-close and give it time to read the answer before the
		// reset a close with unread data brings (net/http's way).
		c.tc.CloseWrite()
		time.Sleep(lingerFor)
		c.tc.Close()
		return false
	}
	if !reuse {
		c.tc.Close()
		return false
	}
	if err := c.tc.flush(); err != nil {
		c.tc.Close()
		return false
	}
	return true
}

// lingerFor is how long a connection closed with a body unread waits,
// its side half-closed, before it closes (net/http's rstAvoidanceDelay).
var lingerFor = 500 * time.Millisecond

// maxDrain is the most of a request body left unread that is read and
// dropped so that the connection can serve the next request (net/http's
// maxPostHandlerReadBytes); past it the connection closes.
const maxDrain = 256 << 10

// watchHangup watches the connection for its client going away while a
// worker has the request (net/http's server watches for the whole of
// every handler; the loop only while it matters). A hang-up wakes the
// round trip's waker and ends the request's context.
func (c *h1Conn) watchHangup() {
	if c.watching || c.r < c.w {
		return // pipelined bytes wait in the buffer: the client is there
	}
	if c.resp.req.Body != http.NoBody {
		if b, ok := c.resp.req.Body.(*h1Body); ok && b.left > 0 {
			return // the body is not all read: a read would take it
		}
	}
	c.watching = true
	if c.watchDone == nil {
		c.watchDone = make(chan struct{}, 1)
	}
	c.tc.SetReadDeadline(time.Time{})
	go c.watch()
}

func (c *h1Conn) watch() {
	n, err := c.tc.Read(c.watchByte[:])
	c.watchN = n
	if err != nil && !timedOut(err) {
		c.ctx.cancel() // the trackedConn has woken the waker
	}
	c.watchDone <- struct{}{}
}

// stopWatch ends the watch and keeps the byte it may have read (the
// next request's first).
func (c *h1Conn) stopWatch() {
	c.watching = false
	c.tc.Conn.SetReadDeadline(aLongTimeAgo)
	<-c.watchDone
	c.tc.Conn.SetReadDeadline(time.Time{}) // the loop sets the next one
	if c.watchN == 1 {
		c.buf[0] = c.watchByte[0]
		c.r, c.w = 0, 1
		c.watchN = 0
	}
}

// aLongTimeAgo is a deadline that has passed: setting it wakes a read.
var aLongTimeAgo = time.Unix(1, 0)

// h1Context is a request's context: it ends when its client is known to
// have gone (the hang-up watch, a failed write). It makes no goroutine
// and no channel unless one is asked for.
type h1Context struct {
	conn *h1Conn
	mu   sync.Mutex
	err  error
	done chan struct{}
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (x *h1Context) Deadline() (time.Time, bool) { return time.Time{}, false }

func (x *h1Context) Done() <-chan struct{} {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.done == nil {
		if x.err != nil {
			return closedChan
		}
		x.done = make(chan struct{})
	}
	return x.done
}

func (x *h1Context) Err() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.err
}

func (x *h1Context) Value(key any) any {
	switch key {
	case connKey{}:
		return x.conn.tc
	case http.LocalAddrContextKey:
		return x.conn.tc.LocalAddr()
	}
	return nil
}

func (x *h1Context) cancel() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.err != nil {
		return
	}
	x.err = context.Canceled
	if x.done != nil {
		close(x.done)
	}
}

// h1Body is a request body of a known length, read from the loop's
// buffer first, then from the connection.
type h1Body struct {
	c      *h1Conn
	left   int64
	err    error
	closed bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.left == 0 {
		return 0, io.EOF
	}
	if b.err != nil {
		return 0, b.err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	c := b.c
	var n int
	var err error
	if c.r < c.w {
		n = copy(p, c.buf[c.r:c.w])
		c.r += n
	} else {
		n, err = c.tc.Read(p)
	}
	b.left -= int64(n)
	if err == io.EOF {
		if b.left > 0 {
			err = io.ErrUnexpectedEOF
		} else {
			err = nil
		}
	}
	if err != nil {
		b.err = err
	}
	if b.left == 0 && err == nil {
		err = io.EOF
	}
	return n, err
}

func (b *h1Body) Close() error {
	b.closed = true
	return nil
}

// drain reads and drops what is left of the body, up to maxDrain; false
// when the connection cannot serve another request after it.
func (b *h1Body) drain() bool {
	if b.left == 0 {
		return true
	}
	if b.left > maxDrain || b.err != nil {
		return false
	}
	buf := bufPool.Get().(*[]byte)
	defer bufPool.Put(buf)
	closed := b.closed
	b.closed = false
	_, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{b}, *buf)
	b.closed = closed
	return err == nil && b.left == 0
}

// connQueue is a listener whose connections are handed to it.
type connQueue struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// push hands c to the listener's server, or closes it once the listener
// is closed.
func (q *connQueue) push(c net.Conn) {
	select {
	case q.ch <- c:
	case <-q.done:
		c.Close()
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: q.addr, Err: net.ErrClosed}
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }
