// Package proxied reads the PROXY protocol header (v1 text, v2 binary)
// that a load balancer (HAProxy's send-proxy-v2, an AWS NLB, ...) puts
// before a connection's first byte to say whose connection it is.
//
// The header is believed from the balancer's addresses only, and there
// it is required: a connection from them without one is refused, as is
// a header from anyone else, which would let any client say it is any
// address. Parsing is github.com/pires/go-proxyproto's.
package proxied

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/pires/go-proxyproto"
)

// Errors of Accept.
var (
	// ErrForged: a PROXY header from an address that is not a trusted
	// balancer's.
	ErrForged = errors.New("a PROXY protocol header from an address not in listen.proxy_protocol")
	// ErrMissing: a trusted balancer's connection without a valid header.
	ErrMissing = errors.New("no valid PROXY protocol header from an address in listen.proxy_protocol")
)

// v1 and v2 are how the two versions of the header begin.
var (
	v1 = []byte("PROXY ")
	v2 = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// Accept reads the PROXY header of c when its peer is in trusted, and
// returns a connection whose RemoteAddr and LocalAddr are the ones the
// header carries (a LOCAL header, a balancer's own health check, keeps
// the peer's). From any other peer it looks at the first bytes only, to
// refuse a header there, and returns a connection that reads them again.
// Reading stops at timeout; the deadline is cleared on success. On error
// the connection is not closed: the caller may still answer on it.
func Accept(c net.Conn, trusted []netip.Prefix, timeout time.Duration) (net.Conn, error) {
	if timeout > 0 {
		c.SetReadDeadline(time.Now().Add(timeout))
	}
	var out net.Conn
	var err error
	if in(c.RemoteAddr(), trusted) {
		out, err = fromBalancer(c)
	} else {
		out, err = fromClient(c)
	}
	if err == nil && timeout > 0 {
		c.SetReadDeadline(time.Time{})
	}
	return out, err
}

func fromBalancer(c net.Conn) (net.Conn, error) {
	br := bufio.NewReaderSize(c, 256)
	if _, err := br.Peek(1); err != nil {
		// Connected and gone with nothing said: a balancer's TCP health
		// check, not a missing header.
		return nil, err
	}
	h, err := proxyproto.Read(br)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMissing, err)
	}
	pc := &Conn{Conn: c, remote: c.RemoteAddr(), local: c.LocalAddr()}
	if !h.Command.IsLocal() && h.TransportProtocol != proxyproto.UNSPEC {
		src, dst, ok := h.TCPAddrs()
		if !ok {
			return nil, fmt.Errorf("%w: it carries no TCP addresses (%v)", ErrMissing, h.TransportProtocol)
		}
		pc.remote, pc.local = src, dst
	}
	if n := br.Buffered(); n > 0 {
		// What came after the header, read into the buffer with it.
		pc.pending, _ = br.Peek(n)
		pc.pending = bytes.Clone(pc.pending)
	}
	return pc, nil
}

// fromClient reads as long as what came could still be a header, which
// for any HTTP request or TLS handshake is its first byte or two.
func fromClient(c net.Conn) (net.Conn, error) {
	var buf [16]byte
	n := 0
	for could(buf[:n], v1) || could(buf[:n], v2) {
		if n >= len(v1) && bytes.HasPrefix(buf[:n], v1) || n >= len(v2) {
			return nil, ErrForged
		}
		m, err := c.Read(buf[n:])
		n += m
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || n == 0 {
				return nil, err
			}
			if could(buf[:n], v1) && n >= len(v1) || could(buf[:n], v2) && n >= len(v2) {
				return nil, ErrForged
			}
			break // the client ended there: what came is all it sent
		}
	}
	return &Conn{Conn: c, remote: c.RemoteAddr(), local: c.LocalAddr(), pending: bytes.Clone(buf[:n])}, nil
}

// could says b is a prefix of sig, or sig of b.
func could(b, sig []byte) bool {
	if len(b) > len(sig) {
		return bytes.HasPrefix(b, sig)
	}
	return bytes.HasPrefix(sig, b)
}

func in(a net.Addr, nets []netip.Prefix) bool {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return false
	}
	addr := ap.Addr().Unmap()
	for _, n := range nets {
		if n.Contains(addr) {
			return true
		}
	}
	return false
}

// Conn is a connection as its PROXY header describes it: RemoteAddr is
// the client the balancer took it from.
type Conn struct {
	net.Conn
	remote, local net.Addr
	pending       []byte // read past the header, not yet returned
}

func (c *Conn) RemoteAddr() net.Addr { return c.remote }
func (c *Conn) LocalAddr() net.Addr  { return c.local }

func (c *Conn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// CloseWrite half-closes the connection, so that an answer written before
// a close reaches the client whole rather than cut by a reset.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// ReadFrom keeps sendfile: net/http hands a file to the connection's
// ReadFrom when it has one.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}
