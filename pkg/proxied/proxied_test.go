package proxied

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// fakeConn is a connection from peer that reads in.
type fakeConn struct {
	net.Conn
	in   io.Reader
	peer net.Addr
}

func (c *fakeConn) Read(b []byte) (int, error)        { return c.in.Read(b) }
func (c *fakeConn) RemoteAddr() net.Addr              { return c.peer }
func (c *fakeConn) LocalAddr() net.Addr               { return &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 80} }
func (c *fakeConn) SetReadDeadline(t time.Time) error { return nil }

var (
	balancer = &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 40000}
	stranger = &net.TCPAddr{IP: net.IPv4(198, 51, 100, 9), Port: 40000}
	trusted  = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
)

func v2Header(t testing.TB, cmd proxyproto.ProtocolVersionAndCommand) []byte {
	h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("2001:db8::7"), Port: 51234}, &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 443})
	h.Command = cmd
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAccept(t *testing.T) {
	const req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	tests := []struct {
		name       string
		peer       net.Addr
		in         []byte
		wantErr    error
		wantRemote string
		wantRead   string
	}{
		{"v1 from the balancer", balancer, []byte("PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n" + req), nil, "203.0.113.7:51234", req},
		{"v2 from the balancer", balancer, append(v2Header(t, proxyproto.PROXY), req...), nil, "[2001:db8::7]:51234", req},
		{"v2 LOCAL (a health check)", balancer, append(v2Header(t, proxyproto.LOCAL), req...), nil, balancer.String(), req},
		{"v1 UNKNOWN", balancer, []byte("PROXY UNKNOWN\r\n" + req), nil, balancer.String(), req},
		{"none from the balancer", balancer, []byte(req), ErrMissing, "", ""},
		{"a broken v1 from the balancer", balancer, []byte("PROXY TCP4 nonsense\r\n" + req), ErrMissing, "", ""},
		{"a request from a client", stranger, []byte(req), nil, stranger.String(), req},
		{"a POST from a client", stranger, []byte("POST / HTTP/1.1\r\n\r\n"), nil, stranger.String(), "POST / HTTP/1.1\r\n\r\n"},
		{"a TLS hello from a client", stranger, []byte("\x16\x03\x01\x02\x00\x01"), nil, stranger.String(), "\x16\x03\x01\x02\x00\x01"},
		{"a short request", stranger, []byte("P"), nil, stranger.String(), "P"},
		{"v1 forged by a client", stranger, []byte("PROXY TCP4 10.9.9.9 10.0.0.1 1 443\r\n" + req), ErrForged, "", ""},
		{"v2 forged by a client", stranger, append(v2Header(t, proxyproto.PROXY), req...), ErrForged, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Accept(&fakeConn{in: bytes.NewReader(tt.in), peer: tt.peer}, trusted, time.Second)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.RemoteAddr().String(); got != tt.wantRemote {
				t.Errorf("RemoteAddr = %s, want %s", got, tt.wantRemote)
			}
			got, _ := io.ReadAll(c)
			if string(got) != tt.wantRead {
				t.Errorf("read %q, want %q", got, tt.wantRead)
			}
		})
	}
}

// A real TCP connection: the header in one write, as the protocol asks of
// a balancer, what follows a byte at a time.
func TestAcceptTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte("PROXY TCP4 192.0.2.1 192.0.2.2 1000 80\r\n"))
		for _, b := range []byte("hello") {
			c.Write([]byte{b})
			time.Sleep(time.Millisecond)
		}
	}()
	raw, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	c, err := Accept(raw, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if c.RemoteAddr().String() != "192.0.2.1:1000" || c.LocalAddr().String() != "192.0.2.2:80" {
		t.Errorf("addresses %s → %s", c.RemoteAddr(), c.LocalAddr())
	}
	if b, _ := io.ReadAll(c); string(b) != "hello" {
		t.Errorf("read %q", b)
	}
}

// Whatever a client sends, it is either refused as a forged header or
// read back unchanged; a balancer's bytes never panic the reader.
func FuzzAccept(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nGET /"))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := Accept(&fakeConn{in: bytes.NewReader(in), peer: stranger}, trusted, time.Second)
		if err == nil {
			got, _ := io.ReadAll(c)
			if !bytes.Equal(got, in) {
				t.Fatalf("a client's bytes %q read back as %q", in, got)
			}
		} else if !errors.Is(err, ErrForged) && len(in) > 0 {
			t.Fatalf("client: %v", err)
		}
		if c, err := Accept(&fakeConn{in: bytes.NewReader(in), peer: balancer}, trusted, time.Second); err == nil {
			io.ReadAll(c)
			c.RemoteAddr()
		}
	})
}
