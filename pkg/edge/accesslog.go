package edge

import (
	"bytes"
	"io"
	"log"
	"net/http"
	"time"

	"github.com/edged/edged/pkg/static"
	"github.com/edged/edged/pkg/wire"
	"github.com/edged/edged/pkg/ws"
	"github.com/rs/zerolog"
)

// logRecord is what one request leaves in the access log.
type logRecord struct {
	start time.Time
	// site is the site whose route took the request (its default site
	// before then): it logs and counts the request.
	site *site
	// multiplexed: the request is one stream of an HTTP/2 connection,
	// which an error on it must not end.
	multiplexed bool
	// conn and h2 are the connection the request came on, HTTP/1 or
	// HTTP/2 (both nil for a test's recorder).
	conn   *trackedConn
	h2     *h2Conn
	status int
	bytes  int64
	worker string
	// client is the real client as a trusted proxy named it; "" when
	// the peer is the client.
	client string
	reason string
	// limit is the limit that turned the request away, if one did.
	limit limit
	// rule is the site's path rule that took the request, if one did.
	rule *rule
	// requestID names the request in the log and to the app
	// (X-Request-ID): a trusted proxy's, else edged's own; made when first
	// asked for (see id), so a static file with the access log off pays
	// nothing for it. user is who basic authentication let in.
	requestID string
	trusted   bool // the peer is a trusted proxy, whose id is kept
	user      string
	// finished: the whole answer went to the client as it was streamed,
	// so a client that leaves afterwards left no request unanswered.
	finished bool

	// For the metrics: what kind of request it was, what the worker
	// measured and when the request was sent to it, the body received,
	// what spilled to disk, how long an answer passed on held its worker.
	kind        string
	stats       wire.Stats
	json        time.Duration // the app's JSON encoding, as the worker measured it
	sent        time.Time
	bodyIn      int64
	spilled     []string
	streamedFor time.Duration
	err         error
	// ws is what a WebSocket carried, once it closed.
	ws *ws.Stats
}

// logAccess writes one structured event per request: fields, never a
// formatted line, so a quote or newline in a header cannot forge an entry.
func (s *site) logAccess(r *http.Request, lr *logRecord) {
	if !s.logged || lr.rule != nil && !lr.rule.cfg.Logged() {
		return
	}
	e := s.access.Info()
	if lr.status >= 500 {
		e = s.access.Warn()
	}
	// What people scan for first.
	e = e.Int("status", lr.status).
		Str("method", r.Method).
		Str("path", r.URL.Path).
		Float64("duration_ms", float64(time.Since(lr.start).Microseconds())/1000)
	if lr.client != "" {
		e = e.Str("client", lr.client).Str("proxy", r.RemoteAddr)
	} else {
		e = e.Str("client", r.RemoteAddr)
	}
	e = e.Str("proto", r.Proto).Int64("bytes", lr.bytes)
	if r.Host != "" {
		e = e.Str("host", r.Host)
	}
	if s.name != "" {
		e = e.Str("site", s.name)
	}
	if lr.site != nil && lr.site.name != "" || lr.requestID != "" {
		e = e.Str("request_id", lr.id(r))
	}
	if lr.user != "" {
		e = e.Str("user", lr.user)
	}
	if r.URL.RawQuery != "" {
		e = e.Str("query", r.URL.RawQuery)
	}
	if lr.worker != "" {
		e = e.Str("worker", lr.worker)
	}
	if lr.reason != "" {
		e = e.Str("reason", lr.reason)
	}
	if lr.err != nil {
		e = e.AnErr("error", lr.err)
	}
	if ref := r.Header.Get("Referer"); ref != "" {
		e = e.Str("referer", ref)
	}
	if ua := r.Header.Get("User-Agent"); ua != "" {
		e = e.Str("user_agent", ua)
	}
	if w := lr.ws; w != nil {
		e = e.Int("close_code", w.Code).Str("closed_by", w.ClosedBy).
			Int64("messages_in", w.MessagesIn).Int64("messages_out", w.MessagesOut).
			Int64("bytes_in", w.BytesIn).Int64("bytes_out", w.BytesOut)
		if w.Reason != "" {
			e = e.Str("close_reason", w.Reason)
		}
	}
	e.Send()
}

// statusWriter records what a handler sent.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	reason string // why the handler refused the request, for the log
}

// SetReason keeps why a static root refused the request.
func (w *statusWriter) SetReason(why string) { w.reason = why }

var _ static.ReasonWriter = (*statusWriter)(nil)

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// ReadFrom keeps sendfile working for static files.
func (w *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	rf, ok := w.ResponseWriter.(io.ReaderFrom)
	if !ok {
		return io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
	}
	n, err := rf.ReadFrom(r)
	w.bytes += n
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// newErrorLog routes net/http's own complaints (TLS handshake errors and
// the like) into the structured log.
func newErrorLog(l zerolog.Logger) *log.Logger {
	return log.New(errorWriter{l}, "", 0)
}

type errorWriter struct{ l zerolog.Logger }

func (w errorWriter) Write(p []byte) (int, error) {
	w.l.Debug().Str("from", "net/http").Msg(string(bytes.TrimSpace(p)))
	return len(p), nil
}
