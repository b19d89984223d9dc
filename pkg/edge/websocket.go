package edge

import (
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"time"

	"github.com/edged/edged/pkg/config"
	"github.com/edged/edged/pkg/upstream"
	"github.com/edged/edged/pkg/ws"
)

// noBody is the body of a request that has none: a WebSocket's opening.
type noBody struct{}

func (noBody) Len() int64                       { return 0 }
func (noBody) InMemory() ([]byte, bool)         { return nil, true }
func (noBody) WriteTo(io.Writer) (int64, error) { return 0, nil }

// serveWebSocket opens a WebSocket to the app: the handshake checked, the
// app asked over a session of its own (it may accept, with a subprotocol
// and headers, or refuse with an HTTP answer), then messages pumped both
// ways by pkg/ws until a side closes. The access log has one event, when
// it closes.
func (s *site) serveWebSocket(w http.ResponseWriter, r *http.Request, c client, lr *logRecord) {
	lr.kind = kindWebSocket
	if class := s.conf.Pool.Class; class != config.ClassASGI && class != config.ClassGevent {
		why := fmt.Sprintf("a WebSocket needs pool.class = \"asgi\" or \"gevent\"; this site's is %q", class)
		s.wsRefusedOnce.Do(func() {
			s.log.Warn().Str("path", r.URL.Path).Str("class", class).Msg("WebSocket refused: " + why + " (logged once)")
		})
		s.fail(w, lr, http.StatusBadRequest, "", why)
		return
	}
	if status, why := ws.Check(r); status != 0 {
		if status == http.StatusUpgradeRequired {
			w.Header().Set("Sec-WebSocket-Version", "13")
		}
		s.fail(w, lr, status, limitProtocol, "WebSocket handshake: "+why)
		return
	}
	x := exchanges.Get().(*exchange)
	defer func() {
		if x != nil {
			exchanges.Put(x)
		}
	}()
	if !s.request(&x.frame, r, c, lr.id(r), 0) {
		s.fail(w, lr, http.StatusBadRequest, limitProtocol, "NUL byte in the path")
		return
	}
	// What the app needs to see an upgrade (engineio looks at Upgrade):
	// the hop's own headers, which edged otherwise keeps.
	x.frame.AddHeader("Connection", "Upgrade")
	x.frame.AddHeader("Upgrade", "websocket")
	x.frame.OpenSession()
	req := upstream.Request{Frame: &x.frame, Body: noBody{}, Idempotent: true}
	if lr.conn != nil {
		req.Waker = &lr.conn.wake
	}
	sess, err := s.upstream.Open(r.Context(), &req, &x.resp)
	if err != nil {
		s.failUpstream(w, r, lr, err)
		return
	}
	lr.worker = s.workerName(x.resp.Worker)
	if sess == nil {
		// Refused: the app's own answer, buffered as any.
		defer x.resp.Close()
		resp := newSpool(int(s.cfg.Buffers.ResponseMemory), s.cfg.Buffers.TempDir)
		defer resp.Close()
		if err := x.resp.ReadBody(false, func(b []byte) error { _, err := resp.Write(b); return err }); err != nil {
			s.failUpstream(w, r, lr, err)
			return
		}
		x.resp.Close()
		lr.reason = "the app refused the WebSocket"
		s.writeResponse(w, r, lr, &x.resp.Head, resp)
		return
	}
	// Accepted: the app's headers (a cookie, say) go with the 101. The
	// exchange's buffers go back to the pool now, not when the WebSocket
	// ends: an idle WebSocket should hold as little as it can.
	h := w.Header()
	for i := 0; i+1 < len(x.resp.Fields); i += 2 {
		name := textproto.CanonicalMIMEHeaderKey(x.resp.Fields[i])
		// The handshake's headers are edged's to answer; the hop's and
		// a body's have no place on a 101.
		if hopHeaders[name] || name == "Content-Length" || name == "Content-Type" || strings.HasPrefix(name, "Sec-Websocket-") {
			continue
		}
		h.Add(name, x.resp.Fields[i+1])
	}
	s.addHeaders(h)
	subprotocol := x.resp.Subprotocol
	exchanges.Put(x)
	x = nil
	if lr.conn != nil {
		// Each message goes out as it comes, not held for the next read.
		lr.conn.sendDirect()
	}
	wc := s.cfg.WebSocket
	lim := ws.Limits{MaxMessage: int64(wc.MaxMessage), Idle: wc.IdleTimeout.D(), Ping: wc.PingInterval.D(), Compress: wc.Compress,
		Send: s.lim.SendTimeout.D()}
	var conn *ws.Conn
	st, err := ws.Serve(w, r, subprotocol, sess, lim, func(c *ws.Conn) {
		conn = c
		lr.status = http.StatusSwitchingProtocols
		s.srv.webSockets.add(c)
		s.metrics.webSocketOpened(s.name)
	})
	if conn != nil {
		s.srv.webSockets.remove(conn)
		s.metrics.webSocketClosed(s.name, st)
	}
	if err != nil {
		lr.err = err
		if lr.status == 0 {
			lr.status = http.StatusBadRequest
		}
		return
	}
	lr.finished = true
	lr.ws = &st
}

// workerName is how a site's worker is named in logs: each site numbers
// its workers from 1, "shop/2"; the default site's are "2".
func (s *site) workerName(w string) string {
	if s.name != config.DefaultSite {
		return s.name + "/" + w
	}
	return w
}

// webSockets are the WebSockets open, so that a stop can close them.
type webSockets struct {
	mu      sync.Mutex
	conns   map[*ws.Conn]struct{}
	wg      sync.WaitGroup
	closing int // the code closeAll closes with; 0 until it runs
}

// add registers c; one that opens while all are being closed is closed
// at once with the same code.
func (o *webSockets) add(c *ws.Conn) {
	o.mu.Lock()
	if o.closing != 0 {
		code := o.closing
		o.mu.Unlock()
		go c.Stop(code)
		return
	}
	if o.conns == nil {
		o.conns = map[*ws.Conn]struct{}{}
	}
	o.conns[c] = struct{}{}
	o.wg.Add(1)
	o.mu.Unlock()
}

func (o *webSockets) remove(c *ws.Conn) {
	o.mu.Lock()
	if _, ok := o.conns[c]; ok {
		delete(o.conns, c)
		o.wg.Done()
	}
	o.mu.Unlock()
}

// closeAll closes every WebSocket with code, spread evenly over spread so
// that the clients do not all come back at once, and waits for them
// until deadline.
func (o *webSockets) closeAll(code int, spread time.Duration, deadline time.Time) int {
	o.mu.Lock()
	o.closing = code
	// Spread over at most half the time left, so that the last close
	// still goes out before the deadline.
	spread = min(spread, time.Until(deadline)/2)
	all := make([]*ws.Conn, 0, len(o.conns))
	for c := range o.conns {
		all = append(all, c)
	}
	o.mu.Unlock()
	for i, c := range all {
		c := c
		time.AfterFunc(spread*time.Duration(i)/time.Duration(len(all)), func() { c.Stop(code) })
	}
	done := make(chan struct{})
	go func() { o.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Until(deadline)):
	}
	return len(all)
}
