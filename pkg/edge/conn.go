package edge

import (
	"context"
	"errors"
	"net"
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
}

const response408 = "HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 16\r\nConnection: close\r\n\r\nRequest Timeout\n"

func (c *trackedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.phase.CompareAndSwap(phaseIdle, phaseHeaders)
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

type connKey struct{}

// trackedListener wraps accepted plain-HTTP connections in trackedConn.
type trackedListener struct{ net.Listener }

func (l trackedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &trackedConn{Conn: c}, nil
}

// connContext lets a handler find its trackedConn.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*trackedConn); ok {
		return context.WithValue(ctx, connKey{}, tc)
	}
	return ctx
}

// enterHandler marks the connection busy and returns the function that
// marks it idle again.
func enterHandler(ctx context.Context) func() {
	tc, ok := ctx.Value(connKey{}).(*trackedConn)
	if !ok {
		return func() {}
	}
	tc.phase.Store(phaseHandler)
	return func() { tc.phase.Store(phaseIdle) }
}

// timedOut reports whether err is a deadline passing on a connection.
func timedOut(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
