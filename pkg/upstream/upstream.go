// Package upstream is edged's side of the hop to the workers. Every
// worker takes requests from one listening Unix socket (systemd's
// workerd.socket, or the one `edgectl run` binds): edged opens a
// connection per request, and the kernel's accept queue hands it to
// whichever worker asks next. A worker asks only when it is free, so a
// request never waits behind a busy worker while another is idle, and
// under load the next request is already waiting when a worker finishes.
//
// The Transport owns connecting, the frame I/O, the queue's time limit
// and the decision whether a failed request may go again; it returns
// typed errors. What they mean in HTTP is the edge's business.
package upstream

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/edged/edged/pkg/wire"
	"golang.org/x/sys/unix"
)

// Errors a round trip can end with. A failure after the request reached a
// worker wraps the cause; errors.Is tells these apart.
var (
	// ErrQueueFull: the socket's accept queue (its backlog,
	// limits.queue_length) is full.
	ErrQueueFull = errors.New("every worker is busy and the queue is full")
	// ErrQueueTimeout: no worker took the request within
	// limits.queue_timeout. The app did not run it.
	ErrQueueTimeout = errors.New("every worker stayed busy for the whole queue timeout")
	// ErrNoWorkers: nothing listens on the worker socket.
	ErrNoWorkers = errors.New("no worker socket to connect to")
	// ErrTimeout: a worker took the request but did not answer within
	// app.timeout.
	ErrTimeout = errors.New("the app did not answer within app.timeout")
	// ErrGoneQueued: the request's context ended (its client went away)
	// before a worker took it. The app does not run it: edged hung up
	// first, and a worker that takes it later sees that and drops it.
	ErrGoneQueued = errors.New("the client went away before a worker took the request")
	// ErrGoneTaken: the request's context ended after a worker took it;
	// the app may have run it, or may be running it still.
	ErrGoneTaken = errors.New("the client went away while a worker had the request")
)

// Limits are the times a round trip may take; a reload can change them.
type Limits struct {
	// QueueTimeout bounds the wait for a free worker.
	QueueTimeout time.Duration
	// AppTimeout bounds the app's answer, from when a worker took the
	// request (and, when streaming, between two chunks).
	AppTimeout time.Duration
}

// Body is a buffered request body.
type Body interface {
	Len() int64
	// InMemory returns the body when it is all in memory.
	InMemory() ([]byte, bool)
	WriteTo(io.Writer) (int64, error)
}

// Request is one request for the app: the request frame and the body.
type Request struct {
	Frame *wire.Request
	Body  Body
	// Idempotent says the request may be sent again after a worker hung
	// up without answering (it may have run it).
	Idempotent bool
	// Slot, when set, is released once the request no longer takes room
	// in the queue or with a worker: when its answer is closed, when the
	// round trip fails, or, for a request given up before a worker took
	// it, once a worker has taken it off the queue and dropped it (or
	// its queue deadline has passed). A caller bounds what one client
	// connection may have queued with it.
	Slot Slot
	// Waker, when set, is how the caller says the client has gone (it
	// calls Wake), beside the context's end: the round trip then does
	// not watch the context, which costs an allocation and a
	// registration per request. Set it where the caller learns of a
	// hang-up first hand (an HTTP/1 connection's reader).
	Waker *Waker
}

// gone is why the request's client is gone, or nil.
func (req *Request) gone(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if req.Waker != nil && req.Waker.woken.Load() {
		return context.Canceled
	}
	return nil
}

// Waker wakes the wait of a round trip whose client has gone. The zero
// Waker is ready; it serves one round trip at a time (Reset readies it
// for the next).
type Waker struct {
	mu    sync.Mutex
	f     *os.File // the worker connection waited on; nil between waits
	woken atomic.Bool
}

// Wake ends the wait of the round trip the waker is given to, as the
// end of its context would; one that has not started yet does not send
// its request.
func (w *Waker) Wake() {
	w.mu.Lock()
	w.woken.Store(true)
	if w.f != nil {
		w.f.SetDeadline(aLongTimeAgo)
	}
	w.mu.Unlock()
}

// Reset readies the waker for another round trip.
func (w *Waker) Reset() { w.woken.Store(false) }

// watch makes Wake wake the wait on f (nil: on nothing).
func (w *Waker) watch(f *os.File) {
	w.mu.Lock()
	w.f = f
	w.mu.Unlock()
}

// Slot is room a request holds while it is queued or with a worker.
type Slot interface{ Release() }

// Transport sends requests to the workers. It is safe for concurrent use.
type Transport struct {
	path      string
	limits    atomic.Pointer[Limits]
	inFlight  atomic.Int64
	abandoned atomic.Int64
	sessions  atomic.Int64
	answered  atomic.Int64 // when a worker last answered (Unix ns), 0: never
}

// New returns a transport to the worker socket at path.
func New(path string, lim Limits) *Transport {
	t := &Transport{path: path}
	t.SetLimits(lim)
	return t
}

// SetLimits changes the limits for requests that start from now on.
func (t *Transport) SetLimits(lim Limits) {
	if lim.QueueTimeout <= 0 {
		lim.QueueTimeout = time.Nanosecond
	}
	t.limits.Store(&lim)
}

// InFlight is how many requests are with the workers or queued for them.
func (t *Transport) InFlight() int64 { return t.inFlight.Load() }

// Answered is when a worker last answered a request (zero: never).
func (t *Transport) Answered() time.Time {
	if ns := t.answered.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// Probe asks whether a worker takes requests: it connects, sends nothing
// and half-closes, and waits up to timeout for a worker to take the
// connection and close it (a worker drops a connection that ends before
// a request). nil when one did; ErrNoWorkers when the socket has no one
// behind it; ErrQueueFull when its queue is full; a timeout when the
// connection waited in the queue all that time.
func (t *Transport) Probe(timeout time.Duration) error {
	c, err := t.dial()
	if err != nil {
		return err
	}
	defer c.close()
	if err := c.closeWrite(); err != nil {
		return &Error{Op: "probe", Cause: err}
	}
	c.f.SetReadDeadline(time.Now().Add(timeout))
	var b [64]byte
	for {
		_, err := c.f.Read(b[:])
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return &Error{Op: "probe", Cause: err}
		}
	}
}

// Socket is the path of the workers' socket.
func (t *Transport) Socket() string { return t.path }

// sendAgainMax bounds how often one request is sent again after a worker
// hung up on it unseen.
const sendAgainMax = 3

// FullBodyAt is the body size up to which a worker reads the whole body
// before the app starts (MEMORY_BODY in the Python side): a connection
// that breaks while such a body is going in was never seen by the app.
const FullBodyAt = 1 << 20

// RoundTrip sends req and reads the answer's head into resp. On success
// the caller reads the body with resp.ReadBody and must call resp.Close.
// A request goes again, on a new connection, only when the app cannot
// have seen it, or may have but it is idempotent.
//
// A request whose ctx ends while it waits is given up at once, with
// ErrGoneQueued when no worker had taken it (the app will not run it) or
// ErrGoneTaken; a request whose ctx has ended already is not sent.
func (t *Transport) RoundTrip(ctx context.Context, req *Request, resp *Response) error {
	_, err := t.roundTrip(ctx, req, resp, false)
	return err
}

// roundTrip is RoundTrip, or with open Open's first exchange: it says
// whether the worker accepted a long-lived exchange.
func (t *Transport) roundTrip(ctx context.Context, req *Request, resp *Response, open bool) (accepted bool, err error) {
	resp.Stats = wire.Stats{}
	lim := *t.limits.Load()
	t.inFlight.Add(1)
	sent := time.Now()
	queueEnd := sent.Add(lim.QueueTimeout)
	frame := req.Frame.Frame(req.Body.Len(), queueEnd)
	for attempt := 1; ; attempt++ {
		if err := req.gone(ctx); err != nil {
			t.done(req.Slot)
			return false, &Error{Op: "connect", Err: ErrGoneQueued, Cause: err}
		}
		c, err := t.dial()
		if err != nil {
			t.done(req.Slot)
			return false, err
		}
		// A client that goes away wakes the wait at once, whatever it is
		// waiting for: through the caller's waker, or the context's end.
		var stop func() bool
		if req.Waker != nil {
			req.Waker.watch(c.f)
		} else {
			f := c.f
			stop = context.AfterFunc(ctx, func() { f.SetDeadline(aLongTimeAgo) })
		}
		again, accepted, err := c.exchange(ctx, frame, req, lim, queueEnd, &resp.Head, open)
		if stop != nil {
			stop() // had it run, ctx is done: gone says so below
		} else {
			req.Waker.watch(nil)
		}
		gone := req.gone(ctx)
		if err == nil && gone == nil {
			resp.c, resp.lim, resp.t, resp.slot = c, lim, t, req.Slot
			t.answered.Store(time.Now().UnixNano())
			return accepted, nil
		}
		if gone != nil {
			// Gone, whatever the exchange made of its woken wait.
			return false, t.abandon(c, req.Slot, queueEnd, gone)
		}
		c.close()
		if !again || attempt >= sendAgainMax {
			t.done(req.Slot)
			return false, err
		}
	}
}

// aLongTimeAgo is a deadline that has passed: setting it wakes a wait.
var aLongTimeAgo = time.Unix(1, 0)

// done ends a round trip's hold on the queue.
func (t *Transport) done(slot Slot) {
	t.inFlight.Add(-1)
	if slot != nil {
		slot.Release()
	}
}

// abandon gives up a request whose client went away. It writes a Gone
// frame after the request (when the request is whole) and hangs up its
// writing side first, so that a worker that reads the request from now
// on also sees that before it calls the app (a worker reads a request of
// up to 128 KiB whole, the Gone frame with it; a bigger one's polls for
// the hang-up); then, what the worker has not read tells whether it had
// taken the request: the Gone frame alone left means it had. One not
// taken is still in the socket's accept queue (the kernel keeps a
// connection there until a worker accepts it): the slot stays held until
// a worker has dropped it (it closes: EOF here) or its queue deadline
// has passed, so one client connection cannot fill the queue with
// requests it gave up.
func (t *Transport) abandon(c *conn, slot Slot, queueEnd time.Time, cause error) error {
	taken := true
	if rc, err := c.f.SyscallConn(); err == nil {
		left := 0 // what the worker may leave unread having taken the request
		rc.Control(func(fd uintptr) {
			if c.sent {
				// Non-blocking; after a request the worker relies on it
				// for (128 KiB at most) the socket's buffer has room.
				if _, err := unix.Write(int(fd), goneFrame); err == nil {
					left = goneQueued()
				}
			}
			unix.Shutdown(int(fd), unix.SHUT_WR)
		})
		taken = c.unread() <= left
	}
	if taken {
		c.close()
		t.done(slot)
		return &Error{Op: "wait", Err: ErrGoneTaken, Cause: cause}
	}
	t.inFlight.Add(-1) // from now on counted as abandoned, until dropped
	t.abandoned.Add(1)
	go func() {
		// The worker that takes it reads the frame, sees the hang-up and
		// closes; one that takes it after the deadline answers "expired".
		c.f.SetDeadline(queueEnd.Add(time.Second))
		io.Copy(io.Discard, c.f)
		c.close()
		t.abandoned.Add(-1)
		if slot != nil {
			slot.Release()
		}
	}()
	return &Error{Op: "wait", Err: ErrGoneQueued, Cause: cause}
}

// goneFrame tells a worker that the request before it is given up.
var goneFrame = wire.AppendHeader(nil, wire.TypeGone, 0, 0)

// goneQueued is what a Gone frame alone counts for in SIOCOUTQ, which on
// a Unix socket gives the memory the unread buffers take, not their
// bytes (768 for these 8 here): learnt once, on a socket pair. 0 if it
// cannot be learnt: a worker that took the request but not the Gone frame
// is then counted as not having taken it.
var goneQueued = sync.OnceValue(func() int {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	if _, err := unix.Write(fds[0], goneFrame); err != nil {
		return 0
	}
	n, err := unix.IoctlGetInt(fds[0], unix.SIOCOUTQ)
	if err != nil {
		return 0
	}
	return n
})

// Abandoned is how many requests given up before a worker took them are
// still in the queue.
func (t *Transport) Abandoned() int64 { return t.abandoned.Load() }

func (t *Transport) dial() (*conn, error) {
	// By hand rather than net.Dial, which also asks the kernel for both
	// addresses: two system calls per request that nothing here reads.
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, &Error{Op: "connect", Cause: os.NewSyscallError("socket", err)}
	}
	// A Unix socket connects at once or not at all: EAGAIN means its
	// accept queue is full.
	// A SockaddrUnix is written to while connecting: one per call.
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: t.path}); err != nil {
		unix.Close(fd)
		switch err {
		case unix.EAGAIN:
			return nil, ErrQueueFull
		case unix.ECONNREFUSED, unix.ENOENT:
			return nil, &Error{Op: "connect", Err: ErrNoWorkers, Cause: &os.PathError{Op: "connect", Path: t.path, Err: err}}
		}
		return nil, &Error{Op: "connect", Cause: &os.PathError{Op: "connect", Path: t.path, Err: err}}
	}
	c := conns.Get().(*conn)
	c.f = os.NewFile(uintptr(fd), t.path) // non-blocking: in the poller
	c.r.Reset(c.f)
	return c, nil
}

// Error is a failure on the way to or from a worker. Err, when set, is the
// sentinel it amounts to; Cause is what the system said.
type Error struct {
	Op    string
	Err   error
	Cause error
}

func (e *Error) Error() string {
	switch {
	case e.Err != nil && e.Cause != nil:
		return e.Op + ": " + e.Err.Error() + ": " + e.Cause.Error()
	case e.Err != nil:
		return e.Op + ": " + e.Err.Error()
	}
	return e.Op + ": " + e.Cause.Error()
}

// Is makes errors.Is see the sentinel as well as the cause.
func (e *Error) Is(target error) bool { return e.Err != nil && e.Err == target }

func (e *Error) Unwrap() error { return e.Cause }

type conn struct {
	f *os.File
	r *bufio.Reader
	// sent says the whole request is written: a Gone frame may follow.
	sent bool
}

var conns = sync.Pool{New: func() any { return &conn{r: bufio.NewReaderSize(nil, 64<<10)} }}

// closeWrite shuts the connection's sending side.
func (c *conn) closeWrite() error {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Shutdown(int(fd), unix.SHUT_WR) }); err != nil {
		return err
	}
	return serr
}

func (c *conn) close() {
	c.f.Close()
	c.f = nil
	c.sent = false
	c.r.Reset(nil)
	conns.Put(c)
}

// exchange writes the request and waits for the head. again says the
// request may go once more.
func (c *conn) exchange(ctx context.Context, frame []byte, req *Request, lim Limits, queueEnd time.Time, h *wire.Head, open bool) (again, accepted bool, err error) {
	c.f.SetWriteDeadline(queueEnd.Add(lim.AppTimeout))
	if err := req.gone(ctx); err != nil {
		// Gone before the deadline above was set: it may have undone the
		// wake-up.
		return false, false, err
	}
	if mem, ok := req.Body.InMemory(); ok {
		// One writev, the body not copied again.
		err = c.writev(frame, mem)
	} else if _, err = c.f.Write(frame); err == nil {
		if n := req.Body.Len(); n > wire.MaxChunk {
			// Frame wrote no Body header: one every MaxChunk bytes.
			_, err = req.Body.WriteTo(&wire.BodyWriter{W: c.f, Left: n})
		} else {
			_, err = req.Body.WriteTo(c.f)
		}
	}
	if err != nil {
		if timedOut(err) {
			return false, false, &Error{Op: "send", Err: ErrTimeout, Cause: err}
		}
		// The worker hung up while the request was going in: unless the
		// body was big enough for the app to start on part of it, the
		// app has not run.
		unseen := hungUp(err) && (req.Body.Len() <= FullBodyAt || req.Idempotent)
		return unseen, false, &Error{Op: "send", Cause: err}
	}
	c.sent = true
	if err := c.await(ctx, req, queueEnd, lim); err != nil {
		if errors.Is(err, ErrQueueTimeout) || req.gone(ctx) != nil {
			return false, false, err
		}
		if timedOut(err) {
			return false, false, &Error{Op: "wait", Err: ErrTimeout, Cause: err}
		}
		// Hung up before a byte of answer: the worker may have run it.
		return hungUp(err) && req.Idempotent, false, &Error{Op: "wait", Cause: err}
	}
	if open {
		accepted, err = wire.ReadOpen(c.r, h)
	} else {
		err = wire.ReadHead(c.r, h)
	}
	if err != nil {
		if errors.Is(err, wire.ErrExpired) {
			return false, false, ErrQueueTimeout
		}
		if timedOut(err) {
			return false, false, &Error{Op: "read head", Err: ErrTimeout, Cause: err}
		}
		return false, false, &Error{Op: "read head", Cause: err}
	}
	return false, accepted, nil
}

// queuePoll is how often a request that has no answer yet is checked for
// having been taken by a worker.
const queuePoll = 250 * time.Millisecond

// await waits for the first byte of the answer. While no worker has taken
// the request (what was written still lies unread in the socket), the
// wait is bounded by queueEnd; once one has, by app.timeout from then.
// Whether it was taken is asked only of a request still unanswered after
// queuePoll, so a quick answer costs no more than the read. A request
// whose client went away (ctx done) wakes the wait at once (RoundTrip
// sets a past deadline when ctx ends) and is given up.
func (c *conn) await(ctx context.Context, req *Request, queueEnd time.Time, lim Limits) error {
	start := time.Now()
	var taken time.Time
	left := -1 // unread bytes at the last look; -1: not looked yet
	for {
		now := time.Now()
		end := taken.Add(lim.AppTimeout)
		if taken.IsZero() {
			end = queueEnd
		}
		dl := now.Add(queuePoll)
		if end.Before(dl) {
			dl = end
		}
		c.f.SetReadDeadline(dl)
		if err := req.gone(ctx); err != nil {
			return err // see exchange
		}
		_, err := c.r.Peek(1)
		if err == nil {
			// The rest of the answer has what is left of app.timeout,
			// counted from when the worker took the request (at the
			// latest; before the first look, from when it was sent).
			if taken.IsZero() {
				taken = start
			}
			c.f.SetReadDeadline(taken.Add(lim.AppTimeout))
			return nil
		}
		if !timedOut(err) {
			return err
		}
		if err := req.gone(ctx); err != nil {
			return err
		}
		if !taken.IsZero() {
			if !time.Now().Before(end) {
				return err // app.timeout
			}
			continue
		}
		// A worker reads the whole request before the app starts (up to
		// FullBodyAt; a larger body, at least its first part), so none
		// left, or less than at the last look, means it was taken.
		if q := c.unread(); q == 0 || left >= 0 && q < left {
			taken = time.Now()
			continue
		} else {
			left = q
		}
		if !time.Now().Before(queueEnd) {
			// The worker that takes it later finds its deadline passed
			// and does not run it.
			return ErrQueueTimeout
		}
	}
}

// writev writes the frame and the body with one system call where the
// socket takes them whole.
func (c *conn) writev(frame, body []byte) error {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return err
	}
	bufs := [][]byte{frame, body}
	var werr error
	err = rc.Write(func(fd uintptr) bool {
		for len(bufs) > 0 {
			n, err := unix.Writev(int(fd), bufs)
			if err == unix.EAGAIN {
				return false // wait until the socket takes more
			}
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				werr = os.NewSyscallError("writev", err)
				return true
			}
			for n > 0 && len(bufs) > 0 {
				if n >= len(bufs[0]) {
					n -= len(bufs[0])
					bufs = bufs[1:]
				} else {
					bufs[0] = bufs[0][n:]
					n = 0
				}
			}
			for len(bufs) > 0 && len(bufs[0]) == 0 {
				bufs = bufs[1:]
			}
		}
		return true
	})
	if werr != nil {
		return werr
	}
	return err
}

// unread is how much of what was written the worker has not read yet
// (SIOCOUTQ: on a Unix socket, the memory of the buffers still queued at
// the peer; 0 when it has read everything).
func (c *conn) unread() int {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	rc.Control(func(fd uintptr) {
		n, err = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
	})
	if err != nil {
		return 0
	}
	return n
}

// Response is a worker's answer. Its Head is read by RoundTrip.
type Response struct {
	wire.Head
	// Stats is what the worker measured, once the body has been read
	// (the zero Stats when it sent none).
	Stats wire.Stats
	c     *conn
	lim   Limits
	t     *Transport
	slot  Slot
}

// ReadBody passes the body to sink, a chunk at a time, as wire.ReadBody
// does. When stream is set, each chunk may take up to app.timeout after
// the one before (a response passed on as it comes); otherwise the whole
// body shares the request's deadline.
func (r *Response) ReadBody(stream bool, sink func([]byte) error) error {
	if stream {
		inner := sink
		sink = func(b []byte) error {
			err := inner(b)
			r.c.f.SetReadDeadline(time.Now().Add(r.lim.AppTimeout))
			return err
		}
		r.c.f.SetReadDeadline(time.Now().Add(r.lim.AppTimeout))
	}
	err := wire.ReadBody(r.c.r, sink, &r.Stats)
	if err != nil && timedOut(err) {
		return &Error{Op: "read body", Err: ErrTimeout, Cause: err}
	}
	return err
}

// Close ends the exchange; the connection is not reused.
func (r *Response) Close() {
	if r.c != nil {
		r.c.close()
		r.c = nil
		r.t.done(r.slot)
		r.slot = nil
	}
}

func timedOut(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// hungUp reports an error that means the worker closed the connection.
func hungUp(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
