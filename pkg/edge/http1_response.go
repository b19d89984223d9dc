package edge

import (
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// h1Response is the loop's http.ResponseWriter. It answers as net/http's
// server does for the same calls (the same head, the same framing, the
// same choice of keeping the connection), writing through the
// connection's gathering writer: a head and a small body leave in one
// write, when the request ends.
type h1Response struct {
	c      *h1Conn
	req    *http.Request
	header http.Header

	status      int
	wroteHeader bool // the status is set
	sent        bool // the head has been written
	handlerDone bool

	// From the header as it was when the status was set (net/http
	// snapshots it then).
	contentLength int64 // -1: not declared
	hasType       bool
	hasEncoding   bool
	hasDate       bool
	badLength     bool // the handler's Content-Length was not a length
	te            string
	connection    string
	// connFrom and connTo are where the handler's Connection lines are
	// in head.
	connFrom, connTo int

	// held is the start of the body, up to h1ChunkAfter, kept until it is
	// known whether the handler is done (then its length is the
	// Content-Length) and for sniffing a Content-Type.
	held     []byte
	written  int64
	chunking bool

	closeAfter    bool // the connection ends after this answer
	lingering     bool // and closes slowly: a body is left unread
	wroteDeadline bool
	werr          error

	head []byte // the head being built (the connection's, reused)
}

var (
	_ http.ResponseWriter = (*h1Response)(nil)
	_ http.Flusher        = (*h1Response)(nil)
	_ io.ReaderFrom       = (*h1Response)(nil)
)

// h1ChunkAfter is how much of a body without a Content-Length is held
// before the head goes out with chunked framing (net/http's
// bufferBeforeChunkingSize).
const h1ChunkAfter = 2048

func (w *h1Response) Header() http.Header { return w.header }

func (w *h1Response) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic("invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		// An interim answer, with the fields set so far.
		b := w.statusLine(w.head[:0], code)
		b = w.appendFields(b, code, true)
		b = append(b, "\r\n"...)
		w.head = b
		w.c.tc.Write(b)
		w.c.tc.flush()
		return
	}
	w.wroteHeader = true
	w.status = code
	h := w.header
	if cl := first(h, "Content-Length"); cl != "" {
		if v, err := strconv.ParseInt(cl, 10, 64); err == nil && v >= 0 {
			w.contentLength = v
		} else {
			// Dropped, but it still keeps the length from being
			// measured (net/http's head has it, then drops it).
			delete(h, "Content-Length")
			w.badLength = true
		}
	}
	if w.te = first(h, "Transfer-Encoding"); w.te != "" && w.te != "identity" {
		w.contentLength = -1 // chunked framing, whatever the length said
	}
	_, w.hasType = h["Content-Type"]
	w.hasEncoding = h.Get("Content-Encoding") != ""
	_, w.hasDate = h["Date"]
	w.connection = first(h, "Connection")
	// The fields are written now, as they are: later changes to the map
	// do not reach the head, as with net/http.
	b := w.statusLine(w.head[:0], code)
	w.head = w.appendFields(b, code, false)
}

func first(h http.Header, key string) string {
	if vs := h[key]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

func (w *h1Response) statusLine(b []byte, code int) []byte {
	if text := http.StatusText(code); text != "" {
		b = append(b, "HTTP/1.1 "...)
		b = strconv.AppendInt(b, int64(code), 10)
		b = append(b, ' ')
		b = append(b, text...)
		return append(b, "\r\n"...)
	}
	b = append(b, "HTTP/1.1 "...)
	b = append(b, strconv.Itoa(code + 1000)[1:]...)
	b = append(b, " status code "...)
	b = strconv.AppendInt(b, int64(code), 10)
	return append(b, "\r\n"...)
}

// appendFields writes the handler's fields in net/http's order (sorted),
// less Transfer-Encoding (the framing is edged's to decide) and those a
// status without a body must not have. Where the Connection lines went is
// noted: sendHead takes them out when the answer ends the connection.
func (w *h1Response) appendFields(b []byte, code int, interim bool) []byte {
	var keys [24]string
	ks := keys[:0]
	for k := range w.header {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	dropLength := interim || !bodyAllowedFor(code) || w.te != "" && w.te != "identity"
	for _, k := range ks {
		switch k {
		case "Transfer-Encoding":
			continue
		case "Content-Length":
			if dropLength {
				continue
			}
		case "Content-Type":
			if code == http.StatusNotModified && !interim {
				continue
			}
		}
		if strings.HasPrefix(k, http.TrailerPrefix) || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		if k == "Connection" {
			w.connFrom = len(b)
		}
		for _, v := range w.header[k] {
			b = append(b, k...)
			b = append(b, ": "...)
			b = appendFieldValue(b, v)
			b = append(b, "\r\n"...)
		}
		if k == "Connection" {
			w.connTo = len(b)
		}
	}
	return b
}

// appendFieldValue writes v with CR and LF as spaces and the ends
// trimmed, as net/http does.
func appendFieldValue(b []byte, v string) []byte {
	if strings.ContainsAny(v, "\r\n") {
		v = strings.NewReplacer("\n", " ", "\r", " ").Replace(v)
	}
	v = strings.Trim(v, " \t\n\r")
	return append(b, v...)
}

func (w *h1Response) bodyAllowed() bool { return bodyAllowedFor(w.status) }

func bodyAllowedFor(status int) bool {
	return !(status >= 100 && status <= 199 || status == 204 || status == 304)
}

func (w *h1Response) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !w.bodyAllowed() {
		return 0, http.ErrBodyNotAllowed
	}
	w.written += int64(len(p))
	if w.contentLength != -1 && w.written > w.contentLength {
		return 0, http.ErrContentLength
	}
	if !w.sent {
		if len(w.held)+len(p) <= h1ChunkAfter {
			if w.held == nil {
				w.held = w.c.held[:0]
			}
			w.held = append(w.held, p...)
			return len(p), nil
		}
		if len(w.held) == 0 {
			w.sendHead(p)
			return w.body(p)
		}
		w.sendHead(w.held)
		if _, err := w.body(w.held); err != nil {
			return 0, err
		}
		w.dropHeld()
	}
	return w.body(p)
}

func (w *h1Response) WriteString(s string) (int, error) {
	return w.Write([]byte(s))
}

func (w *h1Response) dropHeld() {
	if w.held != nil {
		w.c.held = w.held[:0]
		w.held = nil
	}
}

// body writes p after the head, framed.
func (w *h1Response) body(p []byte) (int, error) {
	if w.werr != nil {
		return 0, w.werr
	}
	if w.req.Method == http.MethodHead || len(p) == 0 {
		return len(p), nil
	}
	tc := w.c.tc
	if w.chunking {
		var hdr [20]byte
		b := strconv.AppendInt(hdr[:0], int64(len(p)), 16)
		b = append(b, "\r\n"...)
		if _, err := tc.Write(b); err != nil {
			return 0, w.failed(err)
		}
		n, err := tc.Write(p)
		if err == nil {
			_, err = tc.Write(crlf)
		}
		if err != nil {
			return n, w.failed(err)
		}
		return n, nil
	}
	n, err := tc.Write(p)
	if err != nil {
		return n, w.failed(err)
	}
	return n, nil
}

var crlf = []byte("\r\n")

// failed notes a write that failed: the client is gone, as far as the
// request is concerned.
func (w *h1Response) failed(err error) error {
	w.werr = err
	w.c.ctx.cancel()
	return err
}

// sendHead completes the head (p is the start of the body, what net/http
// would have in its buffer) and writes it.
func (w *h1Response) sendHead(p []byte) {
	if w.sent {
		return
	}
	w.sent = true
	c := w.c
	isHEAD := w.req.Method == http.MethodHead
	keepAlive := c.srv.keepsAlive()
	bodyOK := w.bodyAllowed()
	hasTE := w.te != ""
	var length []byte
	var lbuf [20]byte
	if w.handlerDone && !hasTE && bodyOK && w.contentLength == -1 && !w.badLength && (!isHEAD || len(p) > 0) {
		w.contentLength = int64(len(p))
		length = strconv.AppendInt(lbuf[:0], int64(len(p)), 10)
	}
	if w.req.Close || w.connection == "close" || !keepAlive {
		w.closeAfter = true
	}
	forceClose := false
	if b, ok := w.req.Body.(*h1Body); ok && b.left > 0 && !w.closeAfter {
		// The client may send the whole request before it reads the
		// answer: what is left of the body is read first, up to
		// maxDrain; past that the connection ends.
		switch {
		case b.err != nil:
			w.closeAfter = true
		case b.left > maxDrain:
			w.closeAfter, w.lingering, forceClose = true, true, true
		case !b.drain():
			w.closeAfter = true
		}
	}
	contentType := ""
	if bodyOK && !w.hasEncoding && !w.hasType && !hasTE && len(p) > 0 {
		contentType = http.DetectContentType(p)
	}
	switch {
	case isHEAD || !bodyOK:
	case w.contentLength != -1:
	case hasTE && w.te == "identity":
		w.closeAfter = true
	default:
		w.chunking = true
	}
	b := w.head
	closing := forceClose
	if w.closeAfter && (!keepAlive || !hasToken(w.connection, "close")) || forceClose {
		// The handler's Connection lines give way to "close".
		if w.connTo > w.connFrom {
			b = append(b[:w.connFrom], b[w.connTo:]...)
		}
		closing = true
	}
	if !w.hasDate {
		b = append(b, "Date: "...)
		b = appendDate(b)
		b = append(b, "\r\n"...)
	}
	if length != nil {
		b = append(b, "Content-Length: "...)
		b = append(b, length...)
		b = append(b, "\r\n"...)
	}
	if contentType != "" {
		b = append(b, "Content-Type: "...)
		b = append(b, contentType...)
		b = append(b, "\r\n"...)
	}
	if closing {
		b = append(b, "Connection: close\r\n"...)
	}
	if w.chunking {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	b = append(b, "\r\n"...)
	w.head = b
	if _, err := c.tc.Write(b); err != nil {
		w.failed(err)
	}
}

// finish ends the answer once the handler has returned.
func (w *h1Response) finish() {
	w.handlerDone = true
	w.sendHeld()
	if w.chunking && w.werr == nil {
		if _, err := w.c.tc.Write([]byte("0\r\n\r\n")); err != nil {
			w.failed(err)
		}
	}
	if b, ok := w.req.Body.(*h1Body); ok && b.left > 0 {
		// net/http closes the body as the request ends: what is left is
		// read, up to maxDrain; past it the connection closes slowly.
		switch {
		case b.err != nil:
			w.closeAfter = true
		case b.left > maxDrain:
			w.closeAfter, w.lingering = true, true
		case !b.drain():
			w.closeAfter = true
		}
	}
}

// reusable says the connection may serve another request.
func (w *h1Response) reusable() bool {
	if w.closeAfter || w.werr != nil {
		return false
	}
	if w.req.Method != http.MethodHead && w.contentLength != -1 && w.bodyAllowed() && w.contentLength != w.written {
		return false // the answer is not the length it said: out of step
	}
	return true
}

func (w *h1Response) Flush() { w.FlushError() }

// sendHeld sends the head, with what is held of the body, if they have
// not gone yet.
func (w *h1Response) sendHeld() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.sent {
		held := w.held
		w.sendHead(held)
		w.body(held)
		w.dropHeld()
	}
}

func (w *h1Response) FlushError() error {
	w.sendHeld()
	if w.werr != nil {
		return w.werr
	}
	if err := w.c.tc.flush(); err != nil {
		return w.failed(err)
	}
	return nil
}

// ReadFrom sends a file with sendfile once the head is out (and the
// first bytes sniffed, when the handler set no Content-Type).
func (w *h1Response) ReadFrom(src io.Reader) (int64, error) {
	var n int64
	if !w.sent {
		if !w.wroteHeader {
			w.WriteHeader(http.StatusOK)
		}
		if !w.hasType || w.contentLength == -1 {
			buf := make([]byte, 512)
			n0, err := io.CopyBuffer(writerOnly{w}, io.LimitReader(src, 512), buf)
			n += n0
			if err != nil || n0 < 512 {
				return n, err
			}
		}
		w.sendHeld()
	}
	if !w.chunking && w.bodyAllowed() && w.req.Method != http.MethodHead && w.werr == nil {
		n0, err := w.c.tc.ReadFrom(src)
		n += n0
		w.written += n0
		if err != nil {
			w.failed(err)
		}
		return n, err
	}
	n0, err := io.Copy(writerOnly{w}, src)
	return n + n0, err
}

// SetReadDeadline and SetWriteDeadline are what http.ResponseController
// calls.
func (w *h1Response) SetReadDeadline(t time.Time) error {
	return w.c.tc.SetReadDeadline(t)
}

func (w *h1Response) SetWriteDeadline(t time.Time) error {
	w.wroteDeadline = true
	return w.c.tc.SetWriteDeadline(t)
}

// writerOnly hides ReadFrom so io.Copy does not come back to it.
type writerOnly struct{ io.Writer }

type cachedDate struct {
	sec  int64
	text []byte
}

var dateCache atomic.Pointer[cachedDate]

// appendDate writes the current time as an HTTP date, formatted once a
// second.
func appendDate(b []byte) []byte {
	now := time.Now()
	sec := now.Unix()
	if d := dateCache.Load(); d != nil && d.sec == sec {
		return append(b, d.text...)
	}
	d := &cachedDate{sec: sec, text: now.UTC().AppendFormat(nil, http.TimeFormat)}
	dateCache.Store(d)
	return append(b, d.text...)
}
