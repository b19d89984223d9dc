package edge

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/edged/edged/pkg/wire"
)

// The buffered answer: read whole from the worker (which is free again
// at once), then written to the client at the client's pace.

// writeResponse sends the buffered response to the client, compressed
// when [compress] and the client agree.
func (s *site) writeResponse(w http.ResponseWriter, r *http.Request, lr *logRecord, head *wire.Head, resp *spool) {
	status := head.Status
	bodyless := s.header(w, head, status)
	n := resp.Len()
	var body io.WriterTo = resp
	h := w.Header()
	if r.Method == http.MethodGet && s.compress.eligible(status, h, n) {
		h["Vary"] = append(h["Vary"], "Accept-Encoding")
		if mem, ok := resp.InMemory(); ok {
			if enc := chooseEncoding(r.Header["Accept-Encoding"]); enc != "" {
				z := s.compress.compress(enc, mem)
				h["Content-Encoding"] = []string{enc}
				if tag := h["Etag"]; len(tag) == 1 {
					h["Etag"] = []string{weak(tag[0])}
				}
				body, n = bytes.NewReader(z), int64(len(z))
			}
		}
	}
	switch {
	case bodyless:
	case r.Method == http.MethodHead && n == 0:
		// The length a GET would have, when the app gave a valid one.
		if l := appLength(head.Fields); validLength(l) {
			h["Content-Length"] = []string{l}
		}
	default:
		h["Content-Length"] = []string{strconv.FormatInt(n, 10)}
	}
	w.WriteHeader(status)
	lr.status = status
	if bodyless || r.Method == http.MethodHead || n == 0 {
		return
	}
	rc := http.NewResponseController(w)
	sw := &deadlineWriter{w: w, rc: rc, timeout: s.lim.SendTimeout.D()}
	written, err := body.WriteTo(sw)
	lr.bytes = written
	if err != nil {
		lr.err = err
	}
}

// validLength says l is a Content-Length: digits only, no sign, no list.
func validLength(l string) bool {
	if l == "" || len(l) > 18 {
		return false
	}
	for i := 0; i < len(l); i++ {
		if l[i] < '0' || l[i] > '9' {
			return false
		}
	}
	return true
}

// appLength is the Content-Length the app gave, for a HEAD answer.
func appLength(fields []string) string {
	for i := 0; i+1 < len(fields); i += 2 {
		if strings.EqualFold(fields[i], "Content-Length") {
			return fields[i+1]
		}
	}
	return ""
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
