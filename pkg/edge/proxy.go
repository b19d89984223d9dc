package edge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"time"

	"github.com/edged/edged/pkg/upstream"
	"github.com/edged/edged/pkg/wire"
)

// exchange is one request's trip to the app: the environ frame out, the
// answer's head back.
type exchange struct {
	frame wire.Request
	resp  upstream.Response
}

var exchanges = sync.Pool{New: func() any { return new(exchange) }}

// serveApp buffers the request, hands it to a worker, buffers the answer,
// and only then writes it to the client: a slow client never holds a
// worker. An answer the app asks to stream is passed on as it comes
// instead, holding its worker. What it sent goes into lr, for the access
// log.
func (s *site) serveApp(w http.ResponseWriter, r *http.Request, c client, lr *logRecord) {
	lr.kind = kindApp
	limit, bodyLimit := s.maxBody(lr)
	if r.ContentLength > limit {
		s.fail(w, lr, http.StatusRequestEntityTooLarge, bodyLimit, "request body over "+string(bodyLimit))
		return
	}
	body := newSpool(int(s.cfg.Buffers.RequestMemory), s.cfg.Buffers.TempDir)
	defer body.Close()
	if r.ContentLength != 0 {
		status, lim, msg := s.readBody(w, r, body, limit, bodyLimit)
		lr.bodyIn = body.Len()
		if body.Spilled() {
			lr.spilled = append(lr.spilled, "request")
		}
		if status != 0 {
			s.fail(w, lr, status, lim, msg)
			return
		}
	}

	x := exchanges.Get().(*exchange)
	defer exchanges.Put(x)
	if !s.request(&x.frame, r, c, lr.id(r), body.Len()) {
		s.fail(w, lr, http.StatusBadRequest, limitProtocol, "NUL byte in the path")
		return
	}
	req := upstream.Request{Frame: &x.frame, Body: body, Idempotent: idempotent(r.Method)}
	if hc := lr.h2; hc != nil {
		// One HTTP/2 connection's room in the queue (see h2Conn).
		if !hc.acquire(r.Context(), s.lim.QueueTimeout.D()) {
			if r.Context().Err() != nil {
				s.fail(w, lr, 499, "", goneQueued)
			} else {
				s.fail(w, lr, http.StatusServiceUnavailable, limitQueueTimeout, fmt.Sprintf(
					"this connection had %d requests with the workers for the whole limits.queue_timeout (%s)", queuePerConn, s.lim.QueueTimeout))
			}
			return
		}
		req.Slot = hc
	} else if lr.conn != nil {
		// The connection hears of a hang-up first (net/http's read
		// that watches for it goes through it): cheaper than watching
		// the request's context.
		req.Waker = &lr.conn.wake
		lr.conn.watchHangup()
	}
	if s.metrics != nil {
		lr.sent = time.Now() // for the queue wait
	}
	if err := s.upstream.RoundTrip(r.Context(), &req, &x.resp); err != nil {
		s.failUpstream(w, r, lr, err)
		return
	}
	defer x.resp.Close()
	lr.worker, lr.json = s.workerName(x.resp.Worker), x.resp.JSON
	if x.resp.Status < 200 {
		// An interim status as the final answer: passed on, it would
		// leave the client (or a proxy in front) expecting another
		// response, or a protocol switch that never happened.
		s.fail(w, lr, http.StatusBadGateway, "", fmt.Sprintf("the app answered with status %d: a final status must be 200 or more", x.resp.Status))
		return
	}
	out := passOn{s: s, w: w, r: r, lr: lr, head: &x.resp.Head}
	if streamed(x.resp.Fields) {
		// Each chunk to the client as the app sends it, flushed.
		out.flush = true
		began := time.Now()
		if out.start() {
			out.end(x.resp.ReadBody(true, out.write))
		}
		lr.stats, lr.streamedFor = x.resp.Stats, time.Since(began)
		return
	}
	resp := newSpool(int(s.cfg.Buffers.ResponseMemory), s.cfg.Buffers.TempDir)
	defer resp.Close()
	err := x.resp.ReadBody(false, func(b []byte) error {
		if !out.started && resp.Len()+int64(len(b)) <= int64(s.cfg.Buffers.ResponseMax) {
			_, err := resp.Write(b)
			return err
		}
		if !out.started {
			// Over buffers.response_max: what was buffered, then the
			// rest as it comes, the worker held, as nginx does past
			// proxy_max_temp_file_size. The disk never fills.
			s.log.Warn().Str("path", r.URL.Path).Int64("buffered", resp.Len()).
				Msg("response over buffers.response_max: passed on as it comes, its worker held")
			if !out.start() {
				return errBodyless
			}
			n, err := resp.WriteTo(out.sw)
			lr.bytes += n
			if err != nil {
				return err
			}
		}
		return out.write(b)
	})
	lr.stats = x.resp.Stats
	if resp.Spilled() {
		lr.spilled = append(lr.spilled, "response")
	}
	if out.started {
		lr.streamedFor = time.Since(lr.start)
		out.end(err)
		return
	}
	if err != nil {
		s.failUpstream(w, r, lr, err)
		return
	}
	x.resp.Close() // the worker is done: free it before the client reads
	s.writeResponse(w, r, lr, &x.resp.Head, resp)
}

// readBody reads the whole request body into sp, each read bounded by the
// body timeout. It returns a non-zero status on failure, with the limit
// that refused it.
func (s *site) readBody(w http.ResponseWriter, r *http.Request, sp *spool, max int64, maxLimit limit) (int, limit, string) {
	rc := http.NewResponseController(w)
	timeout := s.lim.BodyTimeout.D()
	buf := bufPool.Get().(*[]byte)
	defer bufPool.Put(buf)
	defer rc.SetReadDeadline(time.Time{})
	for {
		rc.SetReadDeadline(time.Now().Add(timeout))
		n, err := r.Body.Read(*buf)
		if n > 0 {
			if sp.Len()+int64(n) > max {
				return http.StatusRequestEntityTooLarge, maxLimit, "request body over " + string(maxLimit)
			}
			if _, werr := sp.Write((*buf)[:n]); werr != nil {
				s.log.Error().Caller().Err(werr).Msg("cannot buffer request body")
				return http.StatusInternalServerError, "", "cannot buffer request body"
			}
		}
		if err == io.EOF {
			return 0, "", ""
		}
		if err != nil {
			if timedOut(err) {
				return http.StatusRequestTimeout, limitBodyTimeout, "request body stalled past limits.body_timeout"
			}
			return http.StatusBadRequest, limitProtocol, "request body: " + err.Error()
		}
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// failUpstream answers a failed trip to the app, with a reason for the
// log in the config's terms.
func (s *site) failUpstream(w http.ResponseWriter, r *http.Request, lr *logRecord, err error) {
	status, lim, why := s.upstreamStatus(r.Context(), err)
	if status == http.StatusBadGateway {
		lr.err = err // something unforeseen: the details may help
	}
	s.fail(w, lr, status, lim, why)
}

// upstreamStatus is the answer for a failed trip to the app, the limit
// that refused it if one did, and why.
func (s *site) upstreamStatus(ctx context.Context, err error) (int, limit, string) {
	l := s.lim
	switch {
	case errors.Is(err, upstream.ErrGoneQueued):
		return 499, "", goneQueued
	case ctx.Err() != nil:
		return 499, "", goneTaken
	case errors.Is(err, upstream.ErrQueueFull):
		return http.StatusServiceUnavailable, limitQueueLength, fmt.Sprintf("every worker busy and limits.queue_length (%d) requests waiting already", l.QueueLength)
	case errors.Is(err, upstream.ErrQueueTimeout):
		return http.StatusServiceUnavailable, limitQueueTimeout, fmt.Sprintf("no worker free within limits.queue_timeout (%s)", l.QueueTimeout)
	case errors.Is(err, upstream.ErrNoWorkers):
		return http.StatusBadGateway, "", "no worker is running (edgectl scale starts some)"
	case errors.Is(err, upstream.ErrTimeout):
		return http.StatusGatewayTimeout, limitAppTimeout, fmt.Sprintf("app.timeout (%s) passed", s.app.Timeout)
	case errors.Is(err, wire.ErrAborted):
		return http.StatusInternalServerError, "", "the app failed after its answer began"
	case errors.Is(err, wire.ErrBadHead):
		return http.StatusBadGateway, "", "the app's answer broke the rules of HTTP (the error says how)"
	}
	return http.StatusBadGateway, "", "the worker's answer broke off"
}

// Why a request ended with 499: its client went away first.
const (
	goneQueued = "the client went away before a worker took the request: the app did not run it"
	goneTaken  = "the client went away"
)

func idempotent(m string) bool {
	switch m {
	case "GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE":
		return true
	}
	return false
}

// header copies the app's headers to w, less hop-by-hop ones and those
// edged sets itself, and says whether the status has no body.
func (s *site) header(w http.ResponseWriter, head *wire.Head, status int) (bodyless bool) {
	h := w.Header()
	f := head.Fields
	for i := 0; i+1 < len(f); i += 2 {
		name := textproto.CanonicalMIMEHeaderKey(f[i])
		if hopHeaders[name] || name == "Content-Length" || name == "X-Accel-Buffering" || connectionOption(f, name) {
			continue
		}
		h[name] = append(h[name], f[i+1])
	}
	// The site's headers where the app sent none of the name, or the
	// site says its own wins.
	s.addHeaders(h)
	bodyless = status < 200 || status == http.StatusNoContent || status == http.StatusNotModified
	if _, ok := h["Content-Type"]; !ok && !bodyless {
		// Never let net/http guess a type from the body.
		h["Content-Type"] = nil
	}
	return bodyless
}

// connectionOption says the app's own Connection header names name: such
// a header belongs to the hop the app thinks it answers on, and is not
// passed on (RFC 9110 7.6.1).
func connectionOption(fields []string, name string) bool {
	for i := 0; i+1 < len(fields); i += 2 {
		if !strings.EqualFold(fields[i], "Connection") {
			continue
		}
		for _, opt := range strings.Split(fields[i+1], ",") {
			if strings.EqualFold(strings.TrimSpace(opt), name) {
				return true
			}
		}
	}
	return false
}

// localAddr is the address the request came in on: the server's name
// and port when the client named no host.
func localAddr(r *http.Request) (host, port string) {
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if h, p, err := net.SplitHostPort(a.String()); err == nil {
			return h, p
		}
	}
	return "", ""
}
