// Package ws ends WebSockets in edged (RFC 6455, permessage-deflate RFC
// 7692), with github.com/coder/websocket doing the framing, masking,
// fragments, control frames and the close handshake, so that Python never
// parses WebSocket bytes and a client's pings never wake a worker. What
// passes between the client and the app is whole messages: Serve pumps
// them between the client's connection and a Peer (the worker's session,
// upstream.Session), one reader on each side, until either side closes.
package ws

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/edged/edged/pkg/wire"
)

// Close codes (RFC 6455 section 7.4.1) edged sends itself.
const (
	GoingAway      = 1001 // edged stops, or the connection idled out
	InvalidPayload = 1007 // a text message that is not UTF-8
	TooBig         = 1009 // a message over max_message
	InternalError  = 1011 // the worker went away
	ServiceRestart = 1012 // the worker restarts
	noStatus       = 1005 // a close frame with no code
	abnormal       = 1006 // no close frame at all
)

// closeGrace is how long the app has to end its side of a WebSocket its
// client closed.
const closeGrace = 5 * time.Second

// sendable says code may be sent in a close frame (RFC 6455 section
// 7.4): the registered codes an endpoint may send, and 3000 to 4999.
func sendable(code int) bool {
	switch {
	case code >= 3000 && code <= 4999:
		return true
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	}
	return false
}

// Wants says r asks to become a WebSocket: Connection names upgrade and
// Upgrade names websocket.
func Wants(r *http.Request) bool {
	return hasToken(r.Header["Connection"], "upgrade") && hasToken(r.Header["Upgrade"], "websocket")
}

// Check says what is wrong with r as an opening handshake (RFC 6455
// section 4.2.1), as the status to answer and why; 0 when it is good.
func Check(r *http.Request) (int, string) {
	if r.Method != http.MethodGet {
		return http.StatusMethodNotAllowed, "a WebSocket opens with GET, not " + r.Method
	}
	if r.ProtoMajor != 1 || r.ProtoMinor != 1 {
		return http.StatusBadRequest, "a WebSocket opens over HTTP/1.1, not " + r.Proto
	}
	if v := r.Header.Get("Sec-WebSocket-Version"); v != "13" {
		return http.StatusUpgradeRequired, "Sec-WebSocket-Version " + quote(v) + ": this server speaks 13"
	}
	key := r.Header.Get("Sec-WebSocket-Key")
	if b, err := base64.StdEncoding.DecodeString(key); err != nil || len(b) != 16 {
		return http.StatusBadRequest, "Sec-WebSocket-Key " + quote(key) + " is not 16 bytes in base64"
	}
	return 0, ""
}

func quote(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return `"` + s + `"`
}

func hasToken(values []string, token string) bool {
	for _, v := range values {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// Limits bound one WebSocket.
type Limits struct {
	// MaxMessage bounds a message either way; a client's over it is
	// closed with 1009.
	MaxMessage int64
	// Idle closes a WebSocket with no message either way for this long
	// (1001); zero: never.
	Idle time.Duration
	// Ping is how often edged pings the client; one that has not
	// answered by the next ping is gone. Zero: no pings.
	Ping time.Duration
	// Compress offers permessage-deflate (no context takeover: no window
	// kept per connection between messages).
	Compress bool
	// Send bounds each write to the client: one that takes none of a
	// message for this long is gone (limits.send_timeout). Zero: none.
	Send time.Duration
}

// Peer is the app's end: the worker's session.
type Peer interface {
	Send(wire.Message) error
	Recv(m *wire.Message, max int) error
	Close()
}

// Stats is what a WebSocket did, for its access log event.
type Stats struct {
	MessagesIn, MessagesOut int64 // from the client, to the client
	BytesIn, BytesOut       int64
	// Code is the close code that ended it, ClosedBy who sent it first
	// ("client", "app", "edged").
	Code     int
	ClosedBy string
	Reason   string
}

// Conn is one WebSocket being served, for Stop.
type Conn struct {
	c        *websocket.Conn
	peer     Peer
	lim      Limits
	ctx      context.Context
	stopping atomic.Int32 // the code Stop asked for, 0 until then
	closing  sync.Once
	st       Stats
	last     atomic.Int64 // the last message either way, Unix ns
	lastPing time.Time    // touched by tick alone
	timer    *time.Timer  // pings and the idle limit; nil with neither
}

// closeWith records, once, who ended the WebSocket and with what.
func (c *Conn) closeWith(by string, code int, reason string) {
	c.closing.Do(func() {
		c.st.ClosedBy, c.st.Code, c.st.Reason = by, code, reason
	})
}

// Stop closes the WebSocket with code (GoingAway when edged stops,
// ServiceRestart when the app's workers restart), telling both ends.
func (c *Conn) Stop(code int) {
	if !c.stopping.CompareAndSwap(0, int32(code)) {
		return
	}
	c.closeWith("edged", code, "edged stops or the app restarts")
	c.peer.Send(wire.Message{Close: true, Code: uint16(code)})
	c.c.Close(websocket.StatusCode(code), "")
}

// tick is the idle limit's and the pings' look, on a timer rather than a
// goroutine of its own: an idle WebSocket costs no stack for it.
func (c *Conn) tick() {
	now := time.Now()
	if c.lim.Idle > 0 && now.Sub(time.Unix(0, c.last.Load())) >= c.lim.Idle {
		// As a stop: should the app's side end first (a worker closes
		// its session when told), the client still gets 1001, not 1011.
		c.stopping.CompareAndSwap(0, GoingAway)
		c.closeWith("edged", GoingAway, "no message for websocket.idle_timeout")
		c.peer.Send(wire.Message{Close: true, Code: GoingAway})
		c.c.Close(GoingAway, "idle")
		return
	}
	if c.lim.Ping > 0 && now.Sub(c.lastPing) >= c.lim.Ping {
		c.lastPing = now
		pctx, cancel := context.WithTimeout(c.ctx, c.lim.Ping)
		err := c.c.Ping(pctx)
		cancel()
		if err != nil {
			if c.ctx.Err() == nil {
				c.closeWith("edged", abnormal, "the client did not answer a ping")
				c.c.CloseNow()
			}
			return
		}
	}
	c.timer.Reset(c.interval())
}

// interval is how often tick looks.
func (c *Conn) interval() time.Duration {
	t := c.lim.Ping
	if c.lim.Idle > 0 && (t == 0 || c.lim.Idle/2 < t) {
		t = c.lim.Idle / 2
	}
	return t
}

// Serve accepts r (checked with Check, the app having accepted it with
// subprotocol and headers already in w) and pumps messages between the
// client and peer until one side closes, or Stop. started, when not nil,
// is told the Conn once it is open. It returns what passed, and an error
// only when the handshake itself failed.
func Serve(w http.ResponseWriter, r *http.Request, subprotocol string, peer Peer, lim Limits, started func(*Conn)) (Stats, error) {
	// The connection's own deadlines (the request's read and send
	// timeouts) would cut a WebSocket short: this one keeps its own.
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{})
	rc.SetWriteDeadline(time.Time{})
	opts := &websocket.AcceptOptions{
		// The app sees Origin and decides, as behind nginx: a browser
		// page of another origin is the app's to refuse.
		InsecureSkipVerify: true,
	}
	if subprotocol != "" {
		opts.Subprotocols = []string{subprotocol}
	}
	if lim.Compress {
		opts.CompressionMode = websocket.CompressionNoContextTakeover
	}
	c, err := websocket.Accept(w, r, opts)
	if err != nil {
		peer.Close()
		return Stats{}, err
	}
	c.SetReadLimit(lim.MaxMessage)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	conn := &Conn{c: c, peer: peer, lim: lim, ctx: ctx, lastPing: time.Now()}
	conn.last.Store(time.Now().UnixNano())
	closeWith := conn.closeWith
	if started != nil {
		started(conn)
	}
	if t := conn.interval(); t > 0 {
		// Armed once assigned: tick re-arms it.
		conn.timer = time.AfterFunc(time.Hour, conn.tick)
		conn.timer.Reset(t)
		defer conn.timer.Stop()
	}

	done := make(chan struct{})
	// ended is set before the reader tells the app the client's side is
	// over, so that the app's answer to that (its side closing) is not
	// taken for the worker going away: a race, once, sent 1011 to a
	// client that had broken the protocol.
	var ended atomic.Bool
	// The client's messages to the app: the one reader of the client.
	go func() {
		defer close(done)
		// However it ends, the app has closeGrace to end its side.
		defer time.AfterFunc(closeGrace, peer.Close)
		for {
			typ, data, err := c.Read(ctx)
			if err != nil {
				code := int(websocket.CloseStatus(err))
				switch {
				case code >= 0:
					closeWith("client", code, "")
				case errors.Is(err, websocket.ErrMessageTooBig):
					code = TooBig
					closeWith("edged", code, "message over websocket.max_message")
				default:
					// No close frame: the client went, or edged cut it
					// off (a write or ping that failed says why itself).
					code = abnormal
				}
				if code == noStatus {
					code = 1000 // what the app is told of a close without a code
				}
				ended.Store(true)
				peer.Send(wire.Message{Close: true, Code: uint16(code)})
				return
			}
			text := typ == websocket.MessageText
			if text && !utf8.Valid(data) {
				closeWith("edged", InvalidPayload, "a text message that is not UTF-8")
				ended.Store(true)
				c.Close(InvalidPayload, "invalid UTF-8")
				peer.Send(wire.Message{Close: true, Code: InvalidPayload})
				return
			}
			conn.last.Store(time.Now().UnixNano())
			conn.st.MessagesIn++
			conn.st.BytesIn += int64(len(data))
			if err := peer.Send(wire.Message{Text: text, Data: data}); err != nil {
				closeWith("edged", InternalError, "the app's worker went away")
				c.Close(InternalError, "the app's worker went away")
				return
			}
		}
	}()

	// The app's messages to the client: the one reader of the session.
	var m wire.Message
	for {
		if err := peer.Recv(&m, int(lim.MaxMessage)); err != nil {
			select {
			case <-done: // the client closed first: the session ends with it
			default:
				if ended.Load() {
					break // the same, the reader not yet returned
				}
				code := InternalError
				if s := int(conn.stopping.Load()); s != 0 {
					code = s
				}
				closeWith("edged", code, "the app's worker went away")
				c.Close(websocket.StatusCode(code), "")
			}
			break
		}
		if m.Close {
			code := int(m.Code)
			if !sendable(code) {
				code = InternalError // the app's code may not go on the wire
			}
			reason := string(m.Data)
			if len(reason) > 123 || !utf8.ValidString(reason) {
				reason = ""
			}
			closeWith("app", code, reason)
			c.Close(websocket.StatusCode(code), reason)
			break
		}
		typ := websocket.MessageBinary
		if m.Text {
			typ = websocket.MessageText
		}
		conn.last.Store(time.Now().UnixNano())
		conn.st.MessagesOut++
		conn.st.BytesOut += int64(len(m.Data))
		wctx, wcancel := ctx, context.CancelFunc(func() {})
		if lim.Send > 0 {
			wctx, wcancel = context.WithTimeout(ctx, lim.Send)
		}
		err := c.Write(wctx, typ, m.Data)
		wcancel()
		if err != nil {
			if wctx.Err() != nil {
				closeWith("edged", abnormal, "the client took nothing for limits.send_timeout")
			} else {
				closeWith("client", abnormal, "")
			}
			break
		}
	}
	c.CloseNow()
	<-done
	peer.Close()
	closeWith("client", abnormal, "")
	return conn.st, nil
}
