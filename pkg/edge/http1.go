package edge

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/http/httpguts"
)

// h1Server serves HTTP/1.1 connections, plain and over TLS, with a loop
// of its own: one goroutine a connection reads each request head into a
// buffer, builds the request from it, runs the handler on the same
// goroutine and writes the answer through the connection's gathering
// writer. net/http's server does for every request what this loop does
// only when a request needs it: a request context with its own
// goroutine, a goroutine reading in the background for the whole
// handler, a buffered writer of its own, and several deadline changes.
// On this machine that machinery is about half the cost of a small
// answer (docs/performance.md).
//
// The loop takes only what it reads whole and recognises as plain
// HTTP/1.1: a request line of an upper-case method, an origin-form
// target and HTTP/1.1; CRLF-ended header lines of token names and valid
// values; one valid Host; at most one Content-Length and no
// Transfer-Encoding, Expect or Upgrade; a head that fits the loop's
// buffer. Anything else (HTTP/1.0, a chunked body, 100-continue, a
// WebSocket's opening, a malformed head, a client gone part way through
// one) is handed, with the bytes already read, to net/http, which serves
// the connection from then on: whatever net/http answers or refuses is
// still answered or refused the same way, and only the common requests
// take the short way. The same bytes build the same request either way
// (FuzzH1Head compares the two).
type h1Server struct {
	handler http.Handler
	log     zerolog.Logger
	// handoff is the listener net/http serves: connections the loop hands
	// over come out of it.
	handoff *connQueue

	// noKeepAlive: answers end their connections (a drain; see
	// SetKeepAlivesEnabled).
	noKeepAlive atomic.Bool

	mu      sync.Mutex
	conns   map[*h1Conn]struct{}
	closing atomic.Bool
	done    chan struct{} // closed when the last connection has ended, once closing
}

func newH1Server(h http.Handler, log zerolog.Logger, addr net.Addr) *h1Server {
	return &h1Server{handler: h, log: log, handoff: newConnQueue(addr), conns: map[*h1Conn]struct{}{}, done: make(chan struct{})}
}

// serve takes the connections of l until it closes.
func (h *h1Server) serve(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		tc, ok := c.(*trackedConn)
		if !ok {
			// Never happens: the pipeline hands on trackedConns only.
			c.Close()
			continue
		}
		c1 := &h1Conn{srv: h, tc: tc}
		if !h.add(c1) {
			tc.Close()
			continue
		}
		go c1.serve()
	}
}

// keepsAlive says whether answers may keep their connection.
func (h *h1Server) keepsAlive() bool { return !h.closing.Load() && !h.noKeepAlive.Load() }

// SetKeepAlivesEnabled is net/http's Server.SetKeepAlivesEnabled for the
// loop: off, answers end their connections and those waiting for their
// next request are closed (their clients reconnect, through the
// balancer, elsewhere).
func (h *h1Server) SetKeepAlivesEnabled(on bool) {
	h.noKeepAlive.Store(!on)
	if !on {
		h.closeIdle()
	}
}

// closeIdle closes the connections that wait for their next request.
func (h *h1Server) closeIdle() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.conns {
		c.closeIfWaiting()
	}
}

func (h *h1Server) add(c *h1Conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing.Load() {
		return false
	}
	h.conns[c] = struct{}{}
	return true
}

func (h *h1Server) remove(c *h1Conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.conns, c)
	if len(h.conns) == 0 && h.closing.Load() {
		select {
		case <-h.done:
		default:
			close(h.done)
		}
	}
}

// Shutdown stops keep-alive, closes the connections that wait for a
// request, and waits for the others to finish theirs, until ctx ends.
// The listeners are the caller's to close.
func (h *h1Server) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.closing.Store(true)
	if len(h.conns) == 0 {
		select {
		case <-h.done:
		default:
			close(h.done)
		}
	}
	h.mu.Unlock()
	h.closeIdle()
	select {
	case <-h.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// h1Conn is one connection the loop serves.
type h1Conn struct {
	srv    *h1Server
	tc     *trackedConn
	remote string

	// buf holds what was read and not yet used: buf[r:w].
	buf  []byte
	r, w int
	// afterPOST: the last request was a POST (see readRequest).
	afterPOST bool

	// waiting is set while the loop waits for a request with nothing
	// read of it: Shutdown closes such a connection.
	waiting atomic.Int32

	// The watch for the client's hang-up while a worker has the request
	// (see watchHangup).
	watching  bool
	watchDone chan struct{}
	watchByte [1]byte
	watchN    int
	ctx       *h1Context

	head []byte // the answer's head being built, reused
	held []byte // the start of an answer's body, reused (h1Response.held)
	resp h1Response
}

const (
	connBusy    int32 = iota
	connWaiting       // blocked for a request's first bytes
	connClosed        // closed by Shutdown
)

// h1BufSize is the loop's read buffer: a head that does not fit goes to
// net/http, whose own limit is limits.max_header.
const h1BufSize = 4096

var h1Bufs = sync.Pool{New: func() any { b := make([]byte, h1BufSize); return &b }}

func (c *h1Conn) closeIfWaiting() {
	if c.waiting.CompareAndSwap(connWaiting, connClosed) {
		c.tc.Conn.Close()
	}
}

// serve runs requests until the connection ends or is handed over.
func (c *h1Conn) serve() {
	defer c.srv.remove(c)
	c.remote = c.tc.RemoteAddr().String()
	c.tc.h1 = c
	bp := h1Bufs.Get().(*[]byte)
	c.buf = *bp
	defer func() {
		if c.buf != nil {
			h1Bufs.Put(bp)
		}
	}()
	defer func() {
		if p := recover(); p != nil && p != http.ErrAbortHandler {
			c.srv.log.Error().Caller().Str("client", c.remote).Interface("panic", p).Msg("http: panic serving a connection")
			c.tc.Close()
		} else if p != nil {
			c.tc.Close()
		}
	}()
	first := true
	for {
		if c.r == c.w {
			if !c.waitForClient(first) {
				return
			}
		} else {
			// The next head, pipelined or begun during the last
			// request: its header timeout runs from now, and a stall in
			// it is a stalled head (408), not an idle connection.
			c.tc.phase.CompareAndSwap(phaseIdle, phaseHeaders)
			c.tc.SetReadDeadline(time.Now().Add(c.tc.limits().HeaderTimeout.D()))
		}
		first = false
		req, ok := c.readRequest()
		if !ok {
			return
		}
		if req == nil {
			c.handOver()
			return
		}
		if !c.serveRequest(req) {
			return
		}
	}
}

// waitForClient waits for a request's first bytes: the first request's
// within limits.header_timeout of the connection's start (as net/http
// has it), a later one's within limits.idle_timeout. False when the
// connection ended meanwhile. While it waits, Shutdown and a drain may
// close the connection.
func (c *h1Conn) waitForClient(first bool) bool {
	wait := c.tc.limits().IdleTimeout.D()
	if first {
		wait = c.tc.limits().HeaderTimeout.D()
	}
	c.tc.SetReadDeadline(time.Now().Add(wait))
	c.r, c.w = 0, 0
	c.waiting.Store(connWaiting)
	if c.srv.closing.Load() || !first && c.srv.noKeepAlive.Load() {
		c.closeIfWaiting()
		c.tc.Close()
		return false
	}
	n, err := c.tc.Read(c.buf)
	if !c.waiting.CompareAndSwap(connWaiting, connBusy) {
		c.tc.Close() // Shutdown or a drain closed it
		return false
	}
	c.w = n
	if n == 0 {
		// The client went, the timeout passed, or the connection was
		// parked (its Close hands it to the parker).
		c.tc.Close()
		return false
	}
	if err != nil {
		// Bytes and an error at once (a TLS close_notify after the
		// request): the bytes are served, the error is the next read's.
		c.tc.readErr = err
	}
	if !first {
		// Bytes of a request: the rest of its head within the header
		// timeout, from now (net/http's ReadHeaderTimeout).
		c.tc.SetReadDeadline(time.Now().Add(c.tc.limits().HeaderTimeout.D()))
	}
	return true
}

// readRequest reads a request head whole. It returns the request, or nil
// and true when net/http must take the connection over (its buffer then
// holds what was read), or false when the connection has ended.
func (c *h1Conn) readRequest() (*http.Request, bool) {
	if c.afterPOST {
		// Old clients end a POST body with a CRLF more than its length:
		// net/http drops up to four CRs and LFs after a POST.
		c.afterPOST = false
		for i := 0; i < 4 && c.r < c.w && (c.buf[c.r] == '\r' || c.buf[c.r] == '\n'); i++ {
			c.r++
		}
	}
	for {
		if end := headEnd(c.buf[c.r:c.w]); end >= 0 {
			head := c.buf[c.r : c.r+end]
			req := c.parse(head)
			if req == nil {
				return nil, true
			}
			c.r += end
			c.afterPOST = req.Method == http.MethodPost
			return req, true
		}
		if c.r > 0 {
			c.w = copy(c.buf, c.buf[c.r:c.w])
			c.r = 0
		}
		if c.w == len(c.buf) {
			return nil, true // a head too long for the loop
		}
		n, err := c.tc.Read(c.buf[c.w:])
		c.w += n
		if err != nil {
			if n > 0 && headEnd(c.buf[c.r:c.w]) >= 0 {
				continue // the head came whole with the error
			}
			if c.r == c.w && !timedOut(err) {
				c.tc.Close()
				return nil, false
			}
			if c.handOverOrClose(err) {
				return nil, true
			}
			return nil, false
		}
	}
}

// handOverOrClose ends the loop's part after a failed read: a client gone
// part way through a head is net/http's to answer (it has a word for
// that); a timeout has had its answer (the trackedConn wrote the 408),
// and a connection with nothing read is closed without a word.
func (c *h1Conn) handOverOrClose(err error) bool {
	if timedOut(err) || c.r == c.w {
		c.tc.Close()
		return false
	}
	c.tc.readErr = err
	return true
}

// handOver gives the connection, with what was read of it, to net/http.
func (c *h1Conn) handOver() {
	c.tc.h1 = nil
	if c.r < c.w {
		c.tc.pending = append([]byte(nil), c.buf[c.r:c.w]...)
	}
	buf := c.buf[:cap(c.buf)]
	c.buf = nil
	h1Bufs.Put(&buf)
	c.srv.handoff.push(c.tc)
}

// headEnd is the length of the head at the start of b, up to and with
// the empty line that ends it, or -1 when it has not all come. A line
// may end in LF alone (net/http takes those; parse does not, and hands
// such a head over).
func headEnd(b []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1
		if i < len(b) && b[i] == '\n' {
			return i + 1
		}
		if i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
			return i + 2
		}
	}
}

// parse builds the request of a whole head, or returns nil when the head
// is not one the loop takes (see h1Server).
func (c *h1Conn) parse(b []byte) *http.Request {
	head := string(b) // every string of the request is a part of this one
	line, rest, ok := strings.Cut(head, "\r\n")
	if !ok {
		return nil
	}
	method, line, ok := strings.Cut(line, " ")
	if !ok || !upperToken(method) {
		return nil
	}
	target, proto, ok := strings.Cut(line, " ")
	if !ok || proto != "HTTP/1.1" || !originForm(target) {
		return nil
	}
	u := plainURL(target)
	if u == nil {
		var err error
		if u, err = url.ParseRequestURI(target); err != nil {
			return nil
		}
	}
	lines := strings.Count(rest, "\n") // one more than there are fields
	h := make(http.Header, lines)
	values := make([]string, 0, lines)
	host, hosts := "", 0
	length := int64(0)
	lengths := 0
	closing := false
	for {
		var l string
		l, rest, ok = strings.Cut(rest, "\r\n")
		if !ok {
			return nil // a line ended by LF alone
		}
		if l == "" {
			break
		}
		name, value, ok := strings.Cut(l, ":")
		if !ok || !httpguts.ValidHeaderFieldName(name) {
			return nil
		}
		value = strings.Trim(value, " \t")
		if !httpguts.ValidHeaderFieldValue(value) {
			return nil
		}
		if !canonical(name) {
			name = http.CanonicalHeaderKey(name)
		}
		switch name {
		case "Host":
			host, hosts = value, hosts+1
			continue // r.Host, never a field
		case "Content-Length":
			n, ok := contentLength(value)
			if !ok {
				return nil
			}
			length, lengths = n, lengths+1
		case "Transfer-Encoding", "Expect", "Upgrade", "Http2-Settings":
			return nil
		case "Connection":
			if hasToken(value, "upgrade") {
				return nil
			}
			closing = closing || hasToken(value, "close")
		}
		values = append(values, value)
		if vs, ok := h[name]; ok {
			h[name] = append(vs, value)
		} else {
			h[name] = values[len(values)-1 : len(values) : len(values)]
		}
	}
	if hosts != 1 || lengths > 1 || !httpguts.ValidHostHeader(host) {
		return nil
	}
	if p := h["Pragma"]; len(p) > 0 && p[0] == "no-cache" {
		// As net/http: RFC 7234 5.4 reads it as Cache-Control: no-cache.
		if _, ok := h["Cache-Control"]; !ok {
			h["Cache-Control"] = []string{"no-cache"}
		}
	}
	c.ctx = &h1Context{conn: c}
	r, err := http.NewRequestWithContext(c.ctx, method, "", nil)
	if err != nil {
		return nil
	}
	r.URL = u
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
	r.Header = h
	r.Host = host
	r.RequestURI = target
	r.RemoteAddr = c.remote
	r.Close = closing
	r.ContentLength = length
	r.Body = http.NoBody
	if length > 0 {
		r.Body = &h1Body{c: c, left: length}
	}
	return r
}

// upperToken says m is a method edged serves: upper-case letters only
// (others go to net/http, and then to edged's 400).
func upperToken(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		if m[i] < 'A' || m[i] > 'Z' {
			return false
		}
	}
	return m != "PRI" && m != "CONNECT"
}

// originForm says t is a request target of visible ASCII that starts
// with "/" and has no fragment.
func originForm(t string) bool {
	if t == "" || t[0] != '/' {
		return false
	}
	for i := 0; i < len(t); i++ {
		if t[i] <= ' ' || t[i] >= 0x7f || t[i] == '#' {
			return false
		}
	}
	return true
}

// plainURL is the URL of a target with nothing to unescape: a path and
// maybe a query. nil when it has escapes (url.ParseRequestURI then).
func plainURL(t string) *url.URL {
	path, query, _ := strings.Cut(t, "?")
	for i := 0; i < len(path); i++ {
		switch b := path[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		case b == '/' || b == '-' || b == '.' || b == '_' || b == '~':
		default:
			return nil
		}
	}
	for i := 0; i < len(query); i++ {
		if b := query[i]; b == '%' || b == '"' || b == '<' || b == '>' || b == '\\' || b == '^' || b == '`' || b == '{' || b == '|' || b == '}' {
			return nil
		}
	}
	if strings.HasPrefix(path, "//") {
		return nil // looks like an authority: url's rules
	}
	u := &url.URL{Path: path, RawQuery: query}
	if strings.IndexByte(t, '?') >= 0 && query == "" {
		u.ForceQuery = true
	}
	return u
}

// canonical says name is already in net/http's canonical form.
func canonical(name string) bool {
	upper := true
	for i := 0; i < len(name); i++ {
		b := name[i]
		if upper && 'a' <= b && b <= 'z' || !upper && 'A' <= b && b <= 'Z' {
			return false
		}
		upper = b == '-'
	}
	return true
}

// contentLength parses a Content-Length as net/http takes it: digits
// only.
func contentLength(v string) (int64, bool) {
	if v == "" || len(v) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(v[i]-'0')
	}
	return n, true
}

// hasToken says the comma-separated list v has token t, in any case.
func hasToken(v, t string) bool {
	for v != "" {
		var e string
		e, v, _ = strings.Cut(v, ",")
		if strings.EqualFold(strings.Trim(e, " \t"), t) {
			return true
		}
	}
	return false
}
