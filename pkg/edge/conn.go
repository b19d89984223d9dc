package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edged/edged/pkg/config"
	"github.com/edged/edged/pkg/upstream"
)

// Connection phases, for telling a stalled request (408) from an idle
// keep-alive connection (closed silently).
const (
	phaseIdle    int32 = iota // between requests, nothing read yet
	phaseHeaders              // bytes of a request head arrived
	phaseHandler              // a handler owns the connection
)

// trackedConn is an HTTP/1.x connection, plain or over TLS, as edged
// serves it. It answers 408 when a client stalls part way through a
// request head (net/http would close such a connection without a word),
// has every head judged before net/http parses it (headScanner), and
// gathers an answer's writes into one.
//
// Gathering: net/http writes an answer in pieces (its 4 KiB buffer takes
// the head, then a body of a few KiB overflows it: two writes, and over
// TLS two records, for a 4 KiB file). Small writes are held and go out
// together when the server next waits for the client (Read), changes a
// deadline (net/http does both as an answer ends), closes, or when they
// outgrow holdMax. A handler that streams flushes them itself
// (flushClient).
type trackedConn struct {
	net.Conn
	phase   atomic.Int32
	replied atomic.Bool
	// tls is the handshake's outcome for HTTP/1.1 over TLS, nil for plain
	// HTTP: the handler's request gets it as r.TLS.
	tls *tls.ConnectionState

	// scan judges each request head as it arrives (see headScanner);
	// the handler asks for its request's verdict.
	mu   sync.Mutex
	scan headScanner

	metrics *metrics // counts the 408s written here
	// wake ends the worker wait of the request in hand when the client
	// hangs up: net/http's read that watches for it, during a handler,
	// comes through Read.
	wake upstream.Waker
	// limits are the live ones, for the header and idle timeouts (see
	// markHeaderTimeout).
	limits func() config.Limits

	wmu  sync.Mutex
	held *[]byte // writes not yet sent, from heldPool; nil when none
	werr error   // why sending failed: every later read and write fails so
	// direct: every write goes out at once, none held (a WebSocket,
	// whose messages must not wait for the client's next one).
	direct atomic.Bool

	// park, when set, takes the connection out of net/http while it
	// waits long for its client (see parker); rdl is the read deadline
	// net/http last set (live), parked that Close must hand the socket
	// to park rather than close it.
	park   *parker
	rdl    time.Time
	parked bool

	// h1 is edged's own loop while it serves the connection (nil once
	// net/http does); pending is what the loop had read when it handed
	// the connection to net/http, and readErr how its last read ended.
	h1      *h1Conn
	pending []byte
	readErr error
}

// sendDirect hands the connection over to another protocol (a
// WebSocket): every write goes out at once, a read never waits for the
// writes, and what it reads is no longer HTTP heads to judge.
func (c *trackedConn) sendDirect() {
	c.mu.Lock()
	c.scan.state, c.scan.head, c.scan.line, c.scan.verdicts = off, nil, nil, nil
	c.mu.Unlock()
	c.direct.Store(true)
	c.flush()
}

// holdMax is the most output held back: a TLS record's worth.
const holdMax = 16 << 10

var heldPool = sync.Pool{New: func() any { b := make([]byte, 0, holdMax); return &b }}

const response408 = "HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 16\r\nConnection: close\r\n\r\nRequest Timeout\n"

func (c *trackedConn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		// Read by the loop before net/http took over: already judged.
		n := copy(b, c.pending)
		if c.pending = c.pending[n:]; len(c.pending) == 0 {
			c.pending = nil
		}
		return n, nil
	}
	if err := c.readErr; err != nil {
		c.readErr = nil
		return 0, err
	}
	// Waiting for the client: what is held must go first. Except for the
	// one-byte read net/http keeps pending while a handler runs, to see
	// the client go away: flushing there would split the answer being
	// written, which ends with a deadline change and goes out then.
	if c.direct.Load() {
		// Nothing is held back, and reading must not wait for a write
		// to a slow reader (a WebSocket's pongs and closes).
		return c.Conn.Read(b)
	}
	if len(b) > 1 || c.phase.Load() != phaseHandler {
		if err := c.flush(); err != nil {
			return 0, err
		}
	}
	var n int
	var err error
	if c.park != nil && len(b) > 1 && c.phase.Load() == phaseIdle && c.betweenRequests() {
		var park bool
		if n, park, err = c.waitOrPark(b); park {
			return 0, io.EOF // net/http lets go; Close hands the socket on
		}
	} else {
		n, err = c.Conn.Read(b)
	}
	if n > 0 {
		c.phase.CompareAndSwap(phaseIdle, phaseHeaders)
		c.mu.Lock()
		c.scan.feed(b[:n])
		c.mu.Unlock()
	}
	if err != nil && c.phase.Load() == phaseHandler && !timedOut(err) {
		c.wake.Wake() // the client has gone
	}
	if err != nil && c.phase.Load() == phaseHeaders {
		if timedOut(err) && c.replied.CompareAndSwap(false, true) {
			c.Conn.Write([]byte(response408))
			c.metrics.rejectedBy(limitHeaderTimeout)
		}
	}
	return n, err
}

// Write holds b back while it and what is already held fit in holdMax,
// and sends it with them otherwise. It drops what net/http would send
// after the 408, such as a 400 for the request line cut short: the
// client has had its answer.
func (c *trackedConn) Write(b []byte) (int, error) {
	if c.replied.Load() {
		return len(b), nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return 0, c.werr
	}
	if c.direct.Load() {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		return c.send(b)
	}
	if c.held == nil && len(b) < holdMax {
		c.held = heldPool.Get().(*[]byte)
	}
	if c.held != nil && len(*c.held)+len(b) <= holdMax {
		*c.held = append(*c.held, b...)
		return len(b), nil
	}
	if c.held == nil {
		return c.send(b)
	}
	if c.tls == nil {
		// Plain TCP: one writev for both.
		held := len(*c.held)
		bufs := net.Buffers{*c.held, b}
		n, err := bufs.WriteTo(c.Conn)
		c.release()
		if err != nil {
			c.werr = err
		}
		return int(max(n-int64(held), 0)), err
	}
	if err := c.flushLocked(); err != nil {
		return 0, err
	}
	return c.send(b)
}

func (c *trackedConn) send(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err != nil {
		c.werr = err
	}
	return n, err
}

// flush sends what is held; its error is also that of every later read
// and write.
func (c *trackedConn) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.flushLocked()
}

func (c *trackedConn) flushLocked() error {
	if c.held == nil || c.werr != nil {
		return c.werr
	}
	_, err := c.Conn.Write(*c.held)
	c.release()
	if err != nil {
		c.werr = err
	}
	return err
}

func (c *trackedConn) release() {
	*c.held = (*c.held)[:0]
	heldPool.Put(c.held)
	c.held = nil
}

// Held output goes out when a deadline changes: net/http changes them as
// an answer ends and before it waits for the client. A new write deadline
// applies to it (what was held may have waited longer than the old one
// allowed, for a slow worker, through no fault of the client's); the
// removal of one does not: then it goes out under the old.
func (c *trackedConn) SetDeadline(t time.Time) error {
	c.rdl = c.live(t)
	return c.setWriteDeadline(c.rdl, c.Conn.SetDeadline)
}

func (c *trackedConn) SetReadDeadline(t time.Time) error {
	c.flush()
	c.rdl = c.live(t)
	return c.Conn.SetReadDeadline(c.rdl)
}

// waitOrPark reads the client's next request for up to parkAfter; past
// it with nothing read (and the deadline net/http set still ahead), it
// says to park.
func (c *trackedConn) waitOrPark(b []byte) (int, bool, error) {
	grace := time.Now().Add(parkAfter)
	if !c.rdl.IsZero() && !c.rdl.After(grace) {
		n, err := c.Conn.Read(b) // its own deadline comes first
		return n, false, err
	}
	c.Conn.SetReadDeadline(grace)
	n, err := c.Conn.Read(b)
	if n == 0 && timedOut(err) {
		c.parked = true
		return 0, true, nil
	}
	c.Conn.SetReadDeadline(c.rdl)
	return n, false, err
}

// net/http reads its connections' timeouts from its Server, which cannot
// change while it serves, yet a reload changes limits.header_timeout and
// idle_timeout. So the Server is given these marks instead, and the
// connection puts the live limit in their place when net/http sets a read
// deadline from one.
const (
	markHeaderTimeout = 1000 * time.Hour
	markIdleTimeout   = 2000 * time.Hour
)

// live is the read deadline t, with the live limit in place of a mark.
func (c *trackedConn) live(t time.Time) time.Time {
	if t.IsZero() || c.limits == nil {
		return t
	}
	d := time.Until(t)
	switch {
	case d > markHeaderTimeout-time.Hour && d <= markHeaderTimeout:
		return time.Now().Add(c.limits().HeaderTimeout.D())
	case d > markIdleTimeout-time.Hour && d <= markIdleTimeout:
		return time.Now().Add(c.limits().IdleTimeout.D())
	}
	return t
}

func (c *trackedConn) SetWriteDeadline(t time.Time) error {
	return c.setWriteDeadline(t, c.Conn.SetWriteDeadline)
}

func (c *trackedConn) setWriteDeadline(t time.Time, set func(time.Time) error) error {
	if c.h1 != nil && !t.IsZero() {
		// edged's own loop sends what is held as each answer ends: held
		// output goes out under the new deadline then, with the rest of
		// the answer (net/http's server kept the head in its own buffer
		// until then).
		return set(t)
	}
	if t.IsZero() {
		c.flush()
		return set(t)
	}
	err := set(t)
	c.flush()
	return err
}

func (c *trackedConn) Close() error {
	c.flush()
	if c.parked {
		c.parked = false
		if c.park.park(c.Conn, c.rdl) {
			return nil
		}
	}
	return c.Conn.Close()
}

// CloseWrite lets net/http half-close after an answer that ends the
// connection, as it does on a bare connection.
func (c *trackedConn) CloseWrite() error {
	if err := c.flush(); err != nil {
		return err
	}
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// ReadFrom sends a file with sendfile (net/http hands a body to it when
// the connection has ReadFrom, and the wrapper would otherwise hide the
// socket's); anything else, a cached small file say, goes through Write
// and is gathered with the head.
func (c *trackedConn) ReadFrom(r io.Reader) (int64, error) {
	if c.replied.Load() {
		return io.Copy(io.Discard, r)
	}
	if rf, ok := c.Conn.(io.ReaderFrom); ok && fileBacked(r) {
		if err := c.flush(); err != nil {
			return 0, err
		}
		return rf.ReadFrom(r)
	}
	buf := bufPool.Get().(*[]byte)
	defer bufPool.Put(buf)
	return io.CopyBuffer(struct{ io.Writer }{c}, r, *buf)
}

// fileBacked says r reads a file, maybe limited to a part of it.
func fileBacked(r io.Reader) bool {
	if lr, ok := r.(*io.LimitedReader); ok {
		r = lr.R
	}
	_, ok := r.(*os.File)
	return ok
}

// flushClient sends what the request's connection holds: a handler that
// streams calls it after each piece.
func flushClient(r *http.Request) error {
	if tc, ok := r.Context().Value(connKey{}).(*trackedConn); ok {
		return tc.flush()
	}
	return nil
}

type connKey struct{}

// betweenRequests says the scanner has seen every request so far end,
// body and all: only then may a wait for the client park the connection
// (a parked one comes back as a new connection, whose next bytes are
// read as a request head).
func (c *trackedConn) betweenRequests() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.scan.state == inHead && len(c.scan.head) == 0
}

// verdict is the scanner's word on the oldest request not yet asked
// about; ok is false when it has none.
func (c *trackedConn) verdict() (verdict, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.scan.next()
}

// newTrackedConn serves c as HTTP/1.x; state is its TLS handshake's
// outcome, nil for plain HTTP. limits.max_header is the live one when c
// is accepted.
func newTrackedConn(c net.Conn, state *tls.ConnectionState, limits func() config.Limits, m *metrics) *trackedConn {
	return &trackedConn{Conn: c, tls: state, scan: headScanner{max: int(limits().MaxHeader)}, limits: limits, metrics: m}
}

type h2Key struct{}

// connContext lets a handler find its trackedConn or h2Conn.
func connContext(ctx context.Context, c net.Conn) context.Context {
	switch c := c.(type) {
	case *trackedConn:
		return context.WithValue(ctx, connKey{}, c)
	case *h2Conn:
		return context.WithValue(ctx, h2Key{}, c)
	}
	return ctx
}

// enterHandler marks the connection busy and returns the function that
// marks it idle again, with the head scanner's verdict on the request (a
// zero one where the connection has no scanner), and the connection: an
// HTTP/1 one or an HTTP/2 one (both nil for a test's recorder). It gives
// r the TLS state of HTTPS, which net/http sees as a plain connection.
func enterHandler(r *http.Request) (func(), verdict, *trackedConn, *h2Conn) {
	if c, ok := r.Context().Value(connKey{}).(*trackedConn); ok {
		if r.TLS == nil {
			r.TLS = c.tls
		}
		c.phase.Store(phaseHandler)
		c.wake.Reset()
		v, _ := c.verdict()
		return c.idle, v, c, nil
	}
	if c, ok := r.Context().Value(h2Key{}).(*h2Conn); ok {
		r.TLS = c.tls
		c.active.Add(1)
		return c.leave, verdict{}, nil, c
	}
	return func() {}, verdict{}, nil, nil
}

// watchHangup is called as a request goes to a worker: under edged's own
// loop the connection is watched for its client's hang-up from then on
// (net/http watches for the whole of every handler anyway).
func (c *trackedConn) watchHangup() {
	if c.h1 != nil {
		c.h1.watchHangup()
	}
}

// idle marks the connection between requests.
func (c *trackedConn) idle() { c.phase.Store(phaseIdle) }

// timedOut reports whether err is a deadline passing on a connection.
func timedOut(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
