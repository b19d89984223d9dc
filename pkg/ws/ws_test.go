package ws

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/edged/edged/pkg/wire"
)

// fakePeer is the app's end: it echoes every message back, upper case
// for text, unless told otherwise, and records what it got.
type fakePeer struct {
	mu     sync.Mutex
	got    []wire.Message
	out    chan wire.Message
	closed chan struct{}
	once   sync.Once
	echo   bool
}

func newPeer(echo bool) *fakePeer {
	return &fakePeer{out: make(chan wire.Message, 16), closed: make(chan struct{}), echo: echo}
}

func (p *fakePeer) Send(m wire.Message) error {
	select {
	case <-p.closed:
		return net.ErrClosed
	default:
	}
	p.mu.Lock()
	p.got = append(p.got, wire.Message{Close: m.Close, Text: m.Text, Code: m.Code, Data: append([]byte(nil), m.Data...)})
	p.mu.Unlock()
	if p.echo && !m.Close {
		d := m.Data
		if m.Text {
			d = []byte(strings.ToUpper(string(d)))
		}
		p.out <- wire.Message{Text: m.Text, Data: d}
	}
	if m.Close {
		p.Close()
	}
	return nil
}

func (p *fakePeer) Recv(m *wire.Message, max int) error {
	select {
	case o := <-p.out:
		*m = o
		return nil
	case <-p.closed:
		return net.ErrClosed
	}
}

func (p *fakePeer) Close() { p.once.Do(func() { close(p.closed) }) }

func (p *fakePeer) messages() []wire.Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]wire.Message(nil), p.got...)
}

// serve runs Serve behind a test server for each connection, with peer
// and lim; stats come back on the channel, and conns get each Conn.
func serve(t *testing.T, peer *fakePeer, lim Limits) (string, chan Stats, chan *Conn) {
	stats := make(chan Stats, 1)
	conns := make(chan *Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if code, why := Check(r); code != 0 {
			http.Error(w, why, code)
			return
		}
		st, err := Serve(w, r, "", peer, lim, func(c *Conn) { conns <- c })
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
		stats <- st
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http"), stats, conns
}

var lim = Limits{MaxMessage: 1 << 10, Ping: 0, Compress: true, Send: 2 * time.Second}

func TestEcho(t *testing.T) {
	peer := newPeer(true)
	url, stats, _ := serve(t, peer, lim)
	ctx := context.Background()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct {
		typ  websocket.MessageType
		data string
		want string
	}{{websocket.MessageText, "hello", "HELLO"}, {websocket.MessageBinary, "\x00\xff", "\x00\xff"}, {websocket.MessageText, "", ""}} {
		if err := c.Write(ctx, m.typ, []byte(m.data)); err != nil {
			t.Fatal(err)
		}
		typ, got, err := c.Read(ctx)
		if err != nil || typ != m.typ || string(got) != m.want {
			t.Errorf("echo of %q: %v %q %v", m.data, typ, got, err)
		}
	}
	c.Close(websocket.StatusNormalClosure, "bye")
	st := <-stats
	if st.MessagesIn != 3 || st.MessagesOut != 3 || st.BytesIn != 7 || st.Code != 1000 || st.ClosedBy != "client" {
		t.Errorf("stats %+v", st)
	}
	got := peer.messages()
	if last := got[len(got)-1]; !last.Close || last.Code != 1000 {
		t.Errorf("the app was told %+v, want a close with 1000", last)
	}
}

// The close codes edged sends, and what the app is told.
func TestCloses(t *testing.T) {
	ctx := context.Background()
	t.Run("app closes", func(t *testing.T) {
		peer := newPeer(false)
		url, stats, _ := serve(t, peer, lim)
		c, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		peer.out <- wire.Message{Close: true, Code: 4001, Data: []byte("done")}
		_, _, err = c.Read(ctx)
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != 4001 || ce.Reason != "done" {
			t.Errorf("client got %v, want 4001 done", err)
		}
		if st := <-stats; st.Code != 4001 || st.ClosedBy != "app" {
			t.Errorf("stats %+v", st)
		}
	})
	for _, tt := range []struct {
		name string
		send func(c *websocket.Conn) error
		code websocket.StatusCode
	}{
		{"invalid UTF-8", func(c *websocket.Conn) error { return c.Write(ctx, websocket.MessageText, []byte("caf\xe9")) }, InvalidPayload},
		{"over max_message", func(c *websocket.Conn) error {
			return c.Write(ctx, websocket.MessageBinary, make([]byte, 2<<10))
		}, TooBig},
	} {
		t.Run(tt.name, func(t *testing.T) {
			peer := newPeer(true)
			url, stats, _ := serve(t, peer, lim)
			c, _, err := websocket.Dial(ctx, url, nil)
			if err != nil {
				t.Fatal(err)
			}
			tt.send(c)
			_, _, err = c.Read(ctx)
			if got := websocket.CloseStatus(err); got != tt.code {
				t.Errorf("client got %v (%d), want %d", err, got, tt.code)
			}
			st := <-stats
			if st.Code != int(tt.code) || st.ClosedBy != "edged" || st.MessagesIn != 0 {
				t.Errorf("stats %+v", st)
			}
			got := peer.messages()
			if len(got) != 1 || !got[0].Close || got[0].Code != uint16(tt.code) {
				t.Errorf("the app got %+v, want only a close with %d", got, tt.code)
			}
		})
	}
	t.Run("worker gone", func(t *testing.T) {
		peer := newPeer(false)
		url, _, _ := serve(t, peer, lim)
		c, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		peer.Close()
		_, _, err = c.Read(ctx)
		if got := websocket.CloseStatus(err); got != InternalError {
			t.Errorf("client got %v, want 1011", err)
		}
	})
	t.Run("stop", func(t *testing.T) {
		peer := newPeer(false)
		url, stats, conns := serve(t, peer, lim)
		c, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		(<-conns).Stop(GoingAway)
		_, _, err = c.Read(ctx)
		if got := websocket.CloseStatus(err); got != GoingAway {
			t.Errorf("client got %v, want 1001", err)
		}
		if st := <-stats; st.Code != GoingAway {
			t.Errorf("stats %+v", st)
		}
		if got := peer.messages(); len(got) == 0 || got[0].Code != GoingAway {
			t.Errorf("the app got %+v, want a close with 1001", got)
		}
	})
	t.Run("idle", func(t *testing.T) {
		peer := newPeer(false)
		url, stats, _ := serve(t, peer, Limits{MaxMessage: 1 << 10, Idle: 300 * time.Millisecond})
		c, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, _, err = c.Read(ctx)
		if got := websocket.CloseStatus(err); got != GoingAway || time.Since(start) > 3*time.Second {
			t.Errorf("client got %v after %v, want 1001 after about 300 ms", err, time.Since(start))
		}
		<-stats
	})
}

// A client that stops reading while the app sends is cut off after the
// send timeout; a client that answers no ping is cut off at the next.
func TestStalledClients(t *testing.T) {
	peer := newPeer(false)
	url, stats, _ := serve(t, peer, Limits{MaxMessage: 1 << 20, Send: 300 * time.Millisecond})
	c, _, err := websocket.Dial(context.Background(), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	go func() {
		for i := 0; i < 200; i++ {
			select {
			case peer.out <- wire.Message{Data: make([]byte, 512<<10)}:
			case <-peer.closed:
				return
			}
		}
	}()
	select {
	case st := <-stats:
		if st.Reason != "the client took nothing for limits.send_timeout" {
			t.Errorf("stats %+v", st)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a client that reads nothing was not cut off")
	}

	url, stats, _ = serve(t, newPeer(false), Limits{MaxMessage: 1 << 20, Ping: 200 * time.Millisecond})
	raw := rawDial(t, url)
	defer raw.Close()
	// It never reads, so it never answers a ping.
	select {
	case st := <-stats:
		if st.Reason != "the client did not answer a ping" {
			t.Errorf("stats %+v", st)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a client that answers no ping was not cut off")
	}
}

// rawDial opens a WebSocket by hand, for frames no library would send.
func rawDial(t *testing.T, url string) net.Conn {
	t.Helper()
	addr := strings.TrimPrefix(url, "ws://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 16)
	rand.Read(key)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "+
		base64.StdEncoding.EncodeToString(key)+"\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	c.SetReadDeadline(time.Time{})
	return &bufConn{Conn: c, r: br}
}

type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// frame is one client frame: masked unless unmasked is set.
func frame(fin bool, rsv, op byte, payload []byte, unmasked bool) []byte {
	b0 := op | rsv<<4
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	mask := byte(0x80)
	if unmasked {
		mask = 0
	}
	switch n := len(payload); {
	case n < 126:
		out = append(out, mask|byte(n))
	case n < 1<<16:
		out = append(out, mask|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, mask|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if unmasked {
		return append(out, payload...)
	}
	key := []byte{1, 2, 3, 4}
	out = append(out, key...)
	for i, c := range payload {
		out = append(out, c^key[i%4])
	}
	return out
}

// readFrame reads one server frame: its opcode and payload.
func readFrame(t *testing.T, c net.Conn) (byte, []byte, error) {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var h [2]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return 0, nil, err
	}
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		io.ReadFull(c, b[:])
		n = int(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		io.ReadFull(c, b[:])
		n = int(binary.BigEndian.Uint64(b[:]))
	}
	p := make([]byte, n)
	_, err := io.ReadFull(c, p)
	return h[0] & 0x0f, p, err
}

// TestConformance: RFC 6455 and 7692 as a client that breaks them sees
// edged, frame by frame. Written from the RFCs' MUSTs; the library does
// most of it, edged the UTF-8 check and the limits.
func TestConformance(t *testing.T) {
	closeCode := func(p []byte) int {
		if len(p) < 2 {
			return 1005
		}
		return int(binary.BigEndian.Uint16(p))
	}
	tests := []struct {
		name   string
		send   [][]byte
		expect func(t *testing.T, c net.Conn, peer *fakePeer)
	}{
		{"a fragmented text message arrives whole",
			[][]byte{frame(false, 0, 1, []byte("hel"), false), frame(false, 0, 0, []byte("lo "), false), frame(true, 0, 0, []byte("world"), false)},
			func(t *testing.T, c net.Conn, peer *fakePeer) {
				op, p, err := readFrame(t, c)
				if err != nil || op != 1 || string(p) != "HELLO WORLD" {
					t.Errorf("got op %d %q %v", op, p, err)
				}
			}},
		{"a ping between fragments is answered with its payload, the message still whole",
			[][]byte{frame(false, 0, 2, []byte{1}, false), frame(true, 0, 9, []byte("ping!"), false), frame(true, 0, 0, []byte{2}, false)},
			func(t *testing.T, c net.Conn, peer *fakePeer) {
				op, p, _ := readFrame(t, c)
				if op != 10 || string(p) != "ping!" {
					t.Errorf("got op %d %q, want the pong", op, p)
				}
				op, p, _ = readFrame(t, c)
				if op != 2 || string(p) != "\x01\x02" {
					t.Errorf("got op %d %q, want the binary echo", op, p)
				}
			}},
		{"an unmasked client frame ends the connection (1002 or none: RFC 6455 5.1 lets the server just close)",
			[][]byte{frame(true, 0, 1, []byte("x"), true)},
			func(t *testing.T, c net.Conn, peer *fakePeer) {
				op, p, err := readFrame(t, c)
				if err == nil && (op != 8 || closeCode(p) != 1002) {
					t.Errorf("got op %d %q, want a 1002 close or the connection closed", op, p)
				}
				if got := peer.messages(); len(got) != 1 || !got[0].Close {
					t.Errorf("the app got %+v, want only the close", got)
				}
			}},
		{"reserved bits without an extension (1002)",
			[][]byte{frame(true, 2, 1, []byte("x"), false)},
			expectClose(1002, closeCode)},
		{"an unknown opcode (1002)",
			[][]byte{frame(true, 0, 3, []byte("x"), false)},
			expectClose(1002, closeCode)},
		{"a control frame over 125 bytes (1002)",
			[][]byte{frame(true, 0, 9, make([]byte, 126), false)},
			expectClose(1002, closeCode)},
		{"a fragmented control frame (1002)",
			[][]byte{frame(false, 0, 9, []byte("x"), false)},
			expectClose(1002, closeCode)},
		{"a continuation with nothing to continue (1002)",
			[][]byte{frame(true, 0, 0, []byte("x"), false)},
			expectClose(1002, closeCode)},
		{"invalid UTF-8 across fragments (1007)",
			[][]byte{frame(false, 0, 1, []byte("caf\xc3"), false), frame(true, 0, 0, []byte("\x28"), false)},
			expectClose(InvalidPayload, closeCode)},
		{"a message over max_message, in fragments (1009)",
			[][]byte{frame(false, 0, 2, make([]byte, 800), false), frame(true, 0, 0, make([]byte, 800), false)},
			expectClose(TooBig, closeCode)},
		{"a close is answered with a close of the same code",
			[][]byte{frame(true, 0, 8, append(binary.BigEndian.AppendUint16(nil, 1000), "bye"...), false)},
			expectClose(1000, closeCode)},
		{"a close with a code no one may send (1002)",
			[][]byte{frame(true, 0, 8, binary.BigEndian.AppendUint16(nil, 1005), false)},
			expectClose(1002, closeCode)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			peer := newPeer(true)
			url, stats, _ := serve(t, peer, Limits{MaxMessage: 1 << 10})
			c := rawDial(t, url)
			defer c.Close()
			for _, f := range tt.send {
				c.Write(f)
			}
			tt.expect(t, c, peer)
			c.Close()
			select {
			case <-stats:
			case <-time.After(15 * time.Second):
				t.Fatal("Serve did not end")
			}
		})
	}
}

func expectClose(want int, code func([]byte) int) func(t *testing.T, c net.Conn, peer *fakePeer) {
	return func(t *testing.T, c net.Conn, peer *fakePeer) {
		for {
			op, p, err := readFrame(t, c)
			if err != nil {
				t.Errorf("no close frame: %v", err)
				return
			}
			if op == 8 {
				if got := code(p); got != want {
					t.Errorf("close code %d, want %d", got, want)
				}
				return
			}
		}
	}
}

func TestCheck(t *testing.T) {
	good := func() *http.Request {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Connection", "keep-alive, Upgrade")
		r.Header.Set("Upgrade", "WebSocket")
		r.Header.Set("Sec-WebSocket-Version", "13")
		r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		return r
	}
	if r := good(); !Wants(r) {
		t.Errorf("Wants: false for a WebSocket opening")
	}
	if code, why := Check(good()); code != 0 {
		t.Errorf("Check of a good opening: %d %s", code, why)
	}
	for _, tt := range []struct {
		name string
		mod  func(r *http.Request)
		want int
	}{
		{"POST", func(r *http.Request) { r.Method = "POST" }, 405},
		{"HTTP/1.0", func(r *http.Request) { r.ProtoMinor = 0 }, 400},
		{"version 8", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Version", "8") }, 426},
		{"no key", func(r *http.Request) { r.Header.Del("Sec-WebSocket-Key") }, 400},
		{"a short key", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "c2hvcnQ=") }, 400},
	} {
		r := good()
		tt.mod(r)
		if code, _ := Check(r); code != tt.want {
			t.Errorf("%s: Check = %d, want %d", tt.name, code, tt.want)
		}
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", "h2c")
	if Wants(r) {
		t.Errorf("Wants: true for an h2c upgrade")
	}
}

// permessage-deflate (RFC 7692) when offered and asked for: a compressed
// message comes back whole; when not offered, no extension is agreed.
func TestCompression(t *testing.T) {
	ctx := context.Background()
	for _, offer := range []bool{true, false} {
		peer := newPeer(true)
		url, _, _ := serve(t, peer, Limits{MaxMessage: 1 << 20, Compress: offer})
		c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{CompressionMode: websocket.CompressionContextTakeover})
		if err != nil {
			t.Fatal(err)
		}
		ext := resp.Header.Get("Sec-WebSocket-Extensions")
		if offer != strings.Contains(ext, "permessage-deflate") {
			t.Errorf("offered %v: Sec-WebSocket-Extensions %q", offer, ext)
		}
		msg := strings.Repeat("compress me ", 1000)
		for i := 0; i < 3; i++ {
			c.Write(ctx, websocket.MessageText, []byte(msg))
			_, got, err := c.Read(ctx)
			if err != nil || string(got) != strings.ToUpper(msg) {
				t.Errorf("offered %v: echo %d: %d bytes, %v", offer, i, len(got), err)
			}
		}
		c.Close(websocket.StatusNormalClosure, "")
	}
}

// A close code the app may not send on the wire (1006, 1015, under 1000)
// goes to the client as 1011, and an over-long reason is dropped.
func TestAppCloseCodes(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		code uint16
		want websocket.StatusCode
	}{{1006, InternalError}, {999, InternalError}, {1015, InternalError}, {4999, 4999}, {1000, 1000}} {
		peer := newPeer(false)
		url, _, _ := serve(t, peer, lim)
		c, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		peer.out <- wire.Message{Close: true, Code: tt.code, Data: []byte(strings.Repeat("r", 200))}
		_, _, err = c.Read(ctx)
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != tt.want || ce.Reason != "" {
			t.Errorf("the app's %d: the client got %v, want %d with no reason", tt.code, err, tt.want)
		}
	}
}
