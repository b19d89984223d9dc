package edge

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// Connection phases, for telling a stalled request (408) from an idle
// keep-alive connection (closed silently).
const (
	phaseIdle    int32 = iota // between requests, nothing read yet
	phaseHeaders              // bytes of a request head arrived
	phaseHandler              // a handler owns the connection
)

// trackedConn answers 408 when a client stalls part way through a request
// head. net/http would close such a connection without a word.
type trackedConn struct {
	net.Conn
	phase   atomic.Int32
	replied atomic.Bool

	// scan judges each request head as it arrives (see headScanner);
	// the handler asks for its request's verdict.
	mu   sync.Mutex
	scan headScanner
}

const response408 = "HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 16\r\nConnection: close\r\n\r\nRequest Timeout\n"

func (c *trackedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.phase.CompareAndSwap(phaseIdle, phaseHeaders)
		c.mu.Lock()
		c.scan.feed(b[:n])
		c.mu.Unlock()
	}
	if err != nil && c.phase.Load() == phaseHeaders {
		if timedOut(err) && c.replied.CompareAndSwap(false, true) {
			c.Conn.Write([]byte(response408))
		}
	}
	return n, err
}

// Write drops what net/http would send after the 408, such as a 400 for
// the request line cut short: the client has had its answer.
func (c *trackedConn) Write(b []byte) (int, error) {
	if c.replied.Load() {
		return len(b), nil
	}
	return c.Conn.Write(b)
}

// ReadFrom hands a file to the connection's own ReadFrom, which sends it
// with sendfile: net/http uses it only when the connection has it, and
// the wrapper would otherwise hide it.
func (c *trackedConn) ReadFrom(r io.Reader) (int64, error) {
	if c.replied.Load() {
		return io.Copy(io.Discard, r)
	}
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

type connKey struct{}

// verdict is the scanner's word on the oldest request not yet asked
// about; ok is false when it has none.
func (c *trackedConn) verdict() (verdict, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.scan.next()
}

// trackedListener wraps accepted plain-HTTP connections in trackedConn;
// maxHeader is limits.max_header.
type trackedListener struct {
	net.Listener
	maxHeader int
}

func (l trackedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &trackedConn{Conn: c, scan: headScanner{max: l.maxHeader}}, nil
}

// connContext lets a handler find its trackedConn.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*trackedConn); ok {
		return context.WithValue(ctx, connKey{}, tc)
	}
	return ctx
}

// enterHandler marks the connection busy and returns the function that
// marks it idle again, with the head scanner's verdict on the request (a
// zero one where the connection has no scanner).
func enterHandler(ctx context.Context) (func(), verdict) {
	tc, ok := ctx.Value(connKey{}).(*trackedConn)
	if !ok {
		return func() {}, verdict{}
	}
	tc.phase.Store(phaseHandler)
	v, _ := tc.verdict()
	return func() { tc.phase.Store(phaseIdle) }, v
}

// timedOut reports whether err is a deadline passing on a connection.
func timedOut(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
