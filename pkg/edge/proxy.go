package edge

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/edged/edged/pkg/pool"
	"github.com/edged/edged/pkg/wire"
)

// exchange is one request's trip to the app: the buffered request body in,
// the buffered response out.
type exchange struct {
	frame wire.Request
	head  wire.Head
}

var exchanges = sync.Pool{New: func() any { return new(exchange) }}

// serveApp buffers the request, hands it to a worker, buffers the answer,
// and only then writes it to the client: a slow client never holds a
// worker. What it sent goes into lr, for the access log.
func (s *site) serveApp(w http.ResponseWriter, r *http.Request, lr *logRecord) {
	limit := int64(s.cfg.Limits.MaxBody)
	if r.ContentLength > limit {
		s.fail(w, lr, http.StatusRequestEntityTooLarge, "request body over limits.max_body")
		return
	}
	body := newSpool(int(s.cfg.Buffers.RequestMemory), s.cfg.Buffers.TempDir)
	defer body.Close()
	if r.ContentLength != 0 {
		if status, msg := s.readBody(w, r, body, limit); status != 0 {
			s.fail(w, lr, status, msg)
			return
		}
	}

	x := exchanges.Get().(*exchange)
	defer exchanges.Put(x)
	if !s.environ(&x.frame, r, s.client(r), body.Len(), localPort(r)) {
		s.fail(w, lr, http.StatusBadRequest, "NUL byte in the path")
		return
	}

	resp := newSpool(int(s.cfg.Buffers.ResponseMemory), s.cfg.Buffers.TempDir)
	defer resp.Close()
	worker, status, err := s.roundTrip(r.Context(), x, r.Method, body, resp)
	lr.worker = worker
	if err != nil {
		s.fail(w, lr, status, err.Error())
		return
	}
	s.writeResponse(w, r, lr, x, resp)
}

// readBody reads the whole request body into sp, each read bounded by the
// body timeout. It returns a non-zero status on failure.
func (s *site) readBody(w http.ResponseWriter, r *http.Request, sp *spool, limit int64) (int, string) {
	rc := http.NewResponseController(w)
	timeout := s.cfg.Limits.BodyTimeout.D()
	buf := bufPool.Get().(*[]byte)
	defer bufPool.Put(buf)
	defer rc.SetReadDeadline(time.Time{})
	for {
		rc.SetReadDeadline(time.Now().Add(timeout))
		n, err := r.Body.Read(*buf)
		if n > 0 {
			if sp.Len()+int64(n) > limit {
				return http.StatusRequestEntityTooLarge, "request body over limits.max_body"
			}
			if _, werr := sp.Write((*buf)[:n]); werr != nil {
				s.log.Error().Err(werr).Msg("cannot buffer request body")
				return http.StatusInternalServerError, "cannot buffer request body"
			}
		}
		if err == io.EOF {
			return 0, ""
		}
		if err != nil {
			if timedOut(err) {
				return http.StatusRequestTimeout, "request body stalled past limits.body_timeout"
			}
			return http.StatusBadRequest, "request body: " + err.Error()
		}
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// roundTrip sends the request to a worker and reads the whole response
// into resp, retrying when the app cannot have seen the request: on
// another worker when one refused the connection, on the same one when a
// kept-alive connection had gone stale. It returns the name of the last
// worker tried ("" when none was free) with the status.
func (s *site) roundTrip(ctx context.Context, x *exchange, method string, body, resp *spool) (worker string, status int, err error) {
	var down []*pool.Worker
	for attempt := 0; ; attempt++ {
		wk, err := s.pool.Acquire(ctx, down...)
		switch {
		case errors.Is(err, pool.ErrQueueFull), errors.Is(err, pool.ErrQueueTimeout):
			return worker, http.StatusServiceUnavailable, err
		case errors.Is(err, pool.ErrUnreachable):
			return worker, http.StatusBadGateway, err
		case err != nil:
			return worker, 499, err
		}
		worker = wk.Name
		res, status, err := s.tryWorker(ctx, wk, x, method, body, resp)
		s.pool.Release(wk)
		if err == nil || res == final || attempt >= 8 {
			return worker, status, err
		}
		s.log.Debug().Err(err).Str("worker", wk.Name).Msg("worker unreachable, trying again")
		if res == refused {
			down = append(down, wk)
		}
	}
}

// What an attempt's failure allows.
type outcome int

const (
	final   outcome = iota // the app may have seen the request
	refused                // the worker refused: try another
	stale                  // a kept-alive connection was dead: try again
)

// tryWorker runs one attempt. Its outcome says whether the request may go
// again: only when the app cannot have seen it.
func (s *site) tryWorker(ctx context.Context, wk *pool.Worker, x *exchange, method string, body, resp *spool) (res outcome, status int, err error) {
	c, err := wk.Conn(ctx)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, os.ErrNotExist) {
			s.pool.MarkDown(wk)
		}
		return refused, http.StatusBadGateway, err
	}
	ok := false
	defer func() {
		if ok {
			c.Put()
		} else {
			c.Close()
		}
	}()
	c.SetDeadline(time.Now().Add(s.cfg.App.Timeout.D()))

	frame := x.frame.Frame(body.Len())
	if mem, inMem := body.InMemory(); inMem {
		// One writev, the body not copied again.
		bufs := net.Buffers{frame, mem}
		_, err = bufs.WriteTo(c.Conn)
	} else if _, err = c.Write(frame); err == nil {
		_, err = body.WriteTo(c.Conn)
	}
	if err != nil {
		// The worker hung up while the request was still going in: the
		// app, which starts on a whole frame, has not run.
		if connGone(err) {
			return s.unseen(wk, c), http.StatusBadGateway, err
		}
		return final, s.upstreamStatus(err), err
	}
	if err = wire.ReadHead(c.R, &x.head); err != nil {
		// Hung up before a byte of answer: the app may have run, so only
		// a request that is safe to repeat goes again.
		if connGone(err) && idempotent(method) {
			return s.unseen(wk, c), http.StatusBadGateway, err
		}
		return final, s.upstreamStatus(err), err
	}
	if err = wire.ReadBody(c.R, func(b []byte) error {
		_, err := resp.Write(b)
		return err
	}); err != nil {
		return final, s.upstreamStatus(err), err
	}
	ok = true
	return final, x.head.Status, nil
}

// unseen is where a request the worker dropped goes next. A kept-alive
// connection that outlived its Python process means the worker restarted:
// all its idle connections are dead, and a fresh one to the same worker
// will do. A fresh connection dropped means the worker is stopping: try
// another.
func (s *site) unseen(wk *pool.Worker, c *pool.Conn) outcome {
	if c.Reused {
		s.pool.Stale(wk)
		return stale
	}
	return refused
}

func (s *site) upstreamStatus(err error) int {
	switch {
	case errors.Is(err, wire.ErrAborted):
		return http.StatusInternalServerError
	case timedOut(err):
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// connGone reports an error that means the peer closed before answering.
func connGone(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func idempotent(m string) bool {
	switch m {
	case "GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE":
		return true
	}
	return false
}

// writeResponse sends the buffered response to the client.
func (s *site) writeResponse(w http.ResponseWriter, r *http.Request, lr *logRecord, x *exchange, resp *spool) {
	h := w.Header()
	appLength := ""
	f := x.head.Fields
	for i := 0; i+1 < len(f); i += 2 {
		name := textproto.CanonicalMIMEHeaderKey(f[i])
		if hopHeaders[name] {
			continue
		}
		if name == "Content-Length" {
			appLength = f[i+1]
			continue
		}
		h[name] = append(h[name], f[i+1])
	}
	status := x.head.Status
	n := resp.Len()
	bodyless := status < 200 || status == http.StatusNoContent || status == http.StatusNotModified
	switch {
	case bodyless:
	case r.Method == http.MethodHead && n == 0 && appLength != "":
		h["Content-Length"] = []string{appLength}
	default:
		h["Content-Length"] = []string{strconv.FormatInt(n, 10)}
	}
	if _, ok := h["Content-Type"]; !ok && !bodyless {
		// Never let net/http guess a type from the body.
		h["Content-Type"] = nil
	}
	w.WriteHeader(status)
	lr.status = status
	if bodyless || r.Method == http.MethodHead || n == 0 {
		return
	}
	rc := http.NewResponseController(w)
	sw := &deadlineWriter{w: w, rc: rc, timeout: s.cfg.Limits.SendTimeout.D()}
	written, err := resp.WriteTo(sw)
	lr.bytes = written
	if err != nil {
		lr.err = err
	}
}

// deadlineWriter gives each write to a client its own send timeout, so a
// slow reader is cut off only when it stops reading.
type deadlineWriter struct {
	w       io.Writer
	rc      *http.ResponseController
	timeout time.Duration
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), 256<<10)]
		d.rc.SetWriteDeadline(time.Now().Add(d.timeout))
		n, err := d.w.Write(chunk)
		total += n
		if err != nil {
			return total, err
		}
		p = p[n:]
	}
	return total, nil
}

func localPort(r *http.Request) string {
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if _, p, err := net.SplitHostPort(a.String()); err == nil {
			return p
		}
	}
	return ""
}
