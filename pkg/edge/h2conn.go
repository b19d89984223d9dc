package edge

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/edged/edged/pkg/config"
	"github.com/rs/zerolog"
)

// h2Conn is an HTTP/2 connection over TLS as edged serves it: the TLS
// connection, after the handshake, handed to net/http's HTTP/2 server as
// a plain one (it serves HTTP/2 on a bare *tls.Conn only, and edged must
// see what the client sends). It adds three things:
//
//   - Flood control. net/http answers every SETTINGS and PING a client
//     sends, and runs a handler for every stream a client opens and
//     resets at once, for as long as the client reads the answers: a
//     client can keep edged's CPU busy with frames that carry no
//     request. The connection follows the client's frame headers and
//     closes the connection when such frames come faster than
//     floodRate, after a burst of floodBurst.
//   - Room in the worker queue. A connection may have at most
//     queuePerConn requests queued for or with the workers (a slot
//     each); more wait here for a slot, so one connection cannot fill
//     the queue every client shares, even with requests it resets.
//   - limits.idle_timeout, read live: the connection ends when the client
//     sends nothing for that long while none of its requests is in hand.
//
// And it gathers the server's writes (h2Writer).
type h2Conn struct {
	net.Conn // the *tls.Conn
	tls      *tls.ConnectionState
	limits   func() config.Limits
	log      zerolog.Logger
	metrics  *metrics

	frames frameScanner
	tokens float64   // flood budget left
	filled time.Time // when tokens was last topped up

	active atomic.Int32  // handlers running for this connection
	slots  chan struct{} // room in the worker queue, one per request

	w *h2Writer // every write goes through it
}

const (
	// floodBurst frames that cost work and carry no request may come at
	// once, and floodRate a second after that. A browser sends a few
	// SETTINGS and PRIORITY frames as it opens a connection, and resets
	// a stream when a page no longer needs it; h2load and curl fewer.
	floodBurst = 1000
	floodRate  = 100
	// queuePerConn is the most requests one connection may have queued
	// for or with the workers at once.
	queuePerConn = 16
)

func newH2Conn(conn net.Conn, state *tls.ConnectionState, limits func() config.Limits, log zerolog.Logger, m *metrics) *h2Conn {
	c := &h2Conn{Conn: conn, tls: state, limits: limits, log: log, metrics: m,
		frames: frameScanner{preface: len(clientPreface)},
		tokens: floodBurst, filled: time.Now(),
		slots: make(chan struct{}, queuePerConn)}
	c.w = newH2Writer(c.Conn, func() time.Duration { return c.limits().SendTimeout.D() })
	return c
}

// Write hands b to the connection's writer (see h2Writer).
func (c *h2Conn) Write(b []byte) (int, error) { return c.w.Write(b) }

// h2CloseWait is how long a closing connection may take to send what is
// pending (its GOAWAY frame, the last answers).
const h2CloseWait = time.Second

// Close returns at once; the writer sends what is pending, for at most
// h2CloseWait, then closes the connection.
func (c *h2Conn) Close() error { return c.w.Close(h2CloseWait) }

// errFlood ends a connection that sent too many frames of no use.
var errFlood = errors.New("HTTP/2 flood: too many SETTINGS, PING, RST_STREAM, PRIORITY or empty frames")

func (c *h2Conn) Read(b []byte) (int, error) {
	for {
		c.Conn.SetReadDeadline(time.Now().Add(c.limits().IdleTimeout.D()))
		n, err := c.Conn.Read(b)
		if n > 0 {
			if !c.frames.feed(b[:n], c.frame) {
				c.log.Warn().Str("client", c.RemoteAddr().String()).Int("burst", floodBurst).Int("per_second", floodRate).
					Msg("HTTP/2 connection closed: it sent frames that carry no request faster than edged answers such")
				c.metrics.rejectedBy(limitProtocol)
				c.w.Close(0)
				return 0, errFlood
			}
			return n, nil
		}
		if err != nil && timedOut(err) && c.active.Load() > 0 {
			continue // quiet, but not idle: a request is in hand
		}
		return n, err
	}
}

// frame takes one frame header from the client and says whether the
// connection may go on.
func (c *h2Conn) frame(typ, flags byte, length uint32) bool {
	const (
		data, headers, priority, rstStream, settings, ping = 0, 1, 2, 3, 4, 6
		endStream, ack                                     = 0x1, 0x1
	)
	switch {
	case typ == settings && flags&ack == 0, typ == ping && flags&ack == 0,
		typ == rstStream, typ == priority,
		typ == data && length == 0 && flags&endStream == 0:
	default:
		return true
	}
	now := time.Now()
	c.tokens = min(floodBurst, c.tokens+now.Sub(c.filled).Seconds()*floodRate)
	c.filled = now
	c.tokens--
	return c.tokens >= 0
}

// acquire takes room in the worker queue for one request, waiting for
// it up to wait. ok is false when none came: the context ended or the
// wait passed.
func (c *h2Conn) acquire(ctx context.Context, wait time.Duration) (ok bool) {
	select {
	case c.slots <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case c.slots <- struct{}{}:
		return true
	case <-ctx.Done():
	case <-t.C:
	}
	return false
}

// leave marks a handler of the connection done.
func (c *h2Conn) leave() { c.active.Add(-1) }

// Release gives back a slot acquire took.
func (c *h2Conn) Release() { <-c.slots }

// clientPreface opens every HTTP/2 connection (RFC 9113 3.4).
const clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// frameScanner follows the frames of an HTTP/2 byte stream as it is
// read, after the client preface: it reads each frame's 9-byte header
// and skips its payload.
type frameScanner struct {
	preface int     // bytes of the preface still to pass
	head    [9]byte // the frame header so far
	have    int     // bytes of head read
	left    uint32  // payload bytes still to pass
}

// feed follows b, the next bytes of the stream, calling frame for each
// frame header; it stops, returning false, when frame does.
func (s *frameScanner) feed(b []byte, frame func(typ, flags byte, length uint32) bool) bool {
	if s.preface > 0 {
		n := min(s.preface, len(b))
		s.preface -= n
		b = b[n:]
	}
	for len(b) > 0 {
		if s.left > 0 {
			n := uint32(min(uint64(s.left), uint64(len(b))))
			s.left -= n
			b = b[n:]
			continue
		}
		n := copy(s.head[s.have:], b)
		s.have += n
		b = b[n:]
		if s.have < len(s.head) {
			return true
		}
		s.have = 0
		length := uint32(s.head[0])<<16 | uint32(binary.BigEndian.Uint16(s.head[1:3]))
		s.left = length
		if !frame(s.head[3], s.head[4], length) {
			return false
		}
	}
	return true
}
