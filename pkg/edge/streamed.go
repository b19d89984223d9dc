package edge

import (
	"errors"
	"net/http"
	"strings"

	"github.com/edged/edged/pkg/wire"
)

// The answers passed on as they come, their worker held: those the app
// asks to stream, and the rest of one over buffers.response_max.

// streamed says the app asked for its answer to be passed on as it comes
// (nginx's X-Accel-Buffering: no, or server-sent events): the same rule
// the Python side applies when it decides to send each chunk at once.
func streamed(fields []string) bool {
	for i := 0; i+1 < len(fields); i += 2 {
		name, value := fields[i], fields[i+1]
		switch {
		case strings.EqualFold(name, "X-Accel-Buffering"):
			if strings.EqualFold(strings.TrimSpace(value), "no") {
				return true
			}
		case strings.EqualFold(name, "Content-Type"):
			if len(value) >= 17 && strings.EqualFold(value[:17], "text/event-stream") {
				return true
			}
		}
	}
	return false
}

// passOn sends an answer to the client as the app sends it, its worker
// held: a streamed answer, or the rest of one over buffers.response_max.
type passOn struct {
	s       *site
	w       http.ResponseWriter
	r       *http.Request
	lr      *logRecord
	head    *wire.Head
	flush   bool // after every chunk (and the head): the app asked to stream
	started bool // the head is out
	sw      *deadlineWriter
}

// start sends the head; it says whether a body follows.
func (p *passOn) start() bool {
	p.started = true
	status := p.head.Status
	bodyless := p.s.header(p.w, p.head, status)
	p.w.WriteHeader(status)
	p.lr.status = status
	rc := http.NewResponseController(p.w)
	if p.flush {
		rc.Flush()
		flushClient(p.r)
	}
	p.sw = &deadlineWriter{w: p.w, rc: rc, timeout: p.s.lim.SendTimeout.D()}
	return !bodyless && p.r.Method != http.MethodHead
}

// write sends one piece of the body; a client that stops reading for
// limits.send_timeout ends it.
func (p *passOn) write(b []byte) error {
	n, err := p.sw.Write(b)
	p.lr.bytes += int64(n)
	if err == nil && p.flush {
		if err = p.sw.rc.Flush(); err == nil {
			err = flushClient(p.r)
		}
	}
	return err
}

// end finishes after the body: on an error the head is out, so all that
// is left is to cut the answer short, for the client to see it is
// incomplete.
func (p *passOn) end(err error) {
	if err == nil || errors.Is(err, errBodyless) {
		p.lr.finished = true
		return
	}
	p.lr.err = err
	panic(http.ErrAbortHandler)
}

// errBodyless ends reading an answer whose body the client must not get.
var errBodyless = errors.New("no body for this answer")
