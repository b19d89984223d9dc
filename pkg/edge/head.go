package edge

import (
	"bytes"
	"net/http"
	"strconv"
)

// headScanner follows the raw bytes of a plain HTTP/1.x connection as
// they are read, request after request, and judges each request head
// before net/http parses it. net/http is more lenient than nginx in ways
// that matter behind a proxy: it takes a request with both Content-Length
// and Transfer-Encoding (and drops Content-Length before a handler could
// see both), and it lets a head run up to 4 KiB past MaxHeaderBytes.
//
// It only follows framing (where one request's head and body end and the
// next one's begin); whatever it cannot follow (a Transfer-Encoding it
// does not know, a Content-Length that does not parse) it leaves to
// net/http, which refuses such a request and closes the connection, and
// stops judging that connection.
type headScanner struct {
	max   int // limits.max_header: the most bytes one head may have
	state scanState
	head  []byte // the head so far, at most max+1 bytes of it
	left  int64  // bytes left of the body or of a chunk
	line  []byte // a chunk-size or trailer line so far
	// verdicts, one per head judged, in the order the requests came.
	verdicts []verdict
}

type scanState int

const (
	inHead      scanState = iota // reading a request head
	inBody                       // left bytes of a Content-Length body
	inChunkSize                  // a chunk-size line
	inChunkData                  // left bytes of a chunk, then its CRLF
	inChunkEnd                   // the CRLF after a chunk's data
	inTrailer                    // trailer lines after the last chunk
	off                          // framing unknown: judge no more
)

// verdict is what the scanner found wrong with one request head; a zero
// status means nothing.
type verdict struct {
	status int
	limit  limit
	reason string
}

// maxChunkLine bounds a chunk-size or trailer line the scanner keeps.
const maxChunkLine = 4096

// feed follows b, the next bytes read from the connection.
func (s *headScanner) feed(b []byte) {
	for len(b) > 0 {
		switch s.state {
		case inHead:
			b = s.feedHead(b)
		case inBody:
			b = s.skip(b, inHead)
		case inChunkSize, inTrailer, inChunkEnd:
			b = s.feedLine(b)
		case inChunkData:
			b = s.skip(b, inChunkEnd)
		case off:
			return
		}
	}
}

// skip passes over the left bytes of a body or a chunk, then goes on to
// next.
func (s *headScanner) skip(b []byte, next scanState) []byte {
	n := min(int64(len(b)), s.left)
	if s.left -= n; s.left == 0 {
		s.state = next
	}
	return b[n:]
}

// feedHead adds to the head until it ends, judges it, and returns what
// follows it.
func (s *headScanner) feedHead(b []byte) []byte {
	if len(s.head) == 0 {
		// Empty lines before a request line are skipped (RFC 9112 2.2).
		for len(b) > 0 && (b[0] == '\r' || b[0] == '\n') {
			b = b[1:]
		}
		if len(b) == 0 {
			return b
		}
	}
	start := len(s.head)
	room := s.max + 1 - len(s.head)
	take := b[:min(len(b), room)]
	s.head = append(s.head, take...)
	// The head ends at an empty line: LF, optional CR, LF. Look from a
	// little before the new bytes, in case the end straddles two reads.
	from := max(start-3, 0)
	end := -1
	for i := from; i < len(s.head); i++ {
		if s.head[i] != '\n' {
			continue
		}
		if i+1 < len(s.head) && s.head[i+1] == '\n' {
			end = i + 2
			break
		}
		if i+2 < len(s.head) && s.head[i+1] == '\r' && s.head[i+2] == '\n' {
			end = i + 3
			break
		}
	}
	if end < 0 {
		if len(s.head) > s.max {
			s.verdicts = append(s.verdicts, verdict{http.StatusRequestHeaderFieldsTooLarge, limitMaxHeader,
				"request head over limits.max_header"})
			s.state = off
			return nil
		}
		return nil
	}
	if end > s.max {
		s.verdicts = append(s.verdicts, verdict{http.StatusRequestHeaderFieldsTooLarge, limitMaxHeader,
			"request head over limits.max_header"})
		s.state = off
		return nil
	}
	rest := b[len(take)-(len(s.head)-end):]
	s.judge(s.head[:end])
	s.head = s.head[:0]
	return rest
}

// judge checks one whole head and sets the state for its body.
func (s *headScanner) judge(head []byte) {
	requestLine, rest, _ := bytes.Cut(head, []byte("\n"))
	http10 := bytes.HasSuffix(bytes.TrimSuffix(requestLine, []byte("\r")), []byte(" HTTP/1.0"))
	var cl, te []byte
	hasCL, hasTE := false, false
	v := verdict{}
	for len(rest) > 0 {
		var l []byte
		l, rest, _ = bytes.Cut(rest, []byte("\n"))
		l = bytes.TrimSuffix(l, []byte("\r"))
		if len(l) == 0 {
			break
		}
		if l[0] == ' ' || l[0] == '\t' {
			v = verdict{http.StatusBadRequest, limitProtocol, "obsolete line folding in a request header"}
			continue
		}
		name, value, _ := bytes.Cut(l, []byte(":"))
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if hasCL && v.status == 0 {
				// net/http takes equal ones as one; a proxy in front may
				// have taken another (nginx refuses both).
				v = verdict{http.StatusBadRequest, limitProtocol, "more than one Content-Length"}
			}
			hasCL = true
			if cl == nil {
				cl = value
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			hasTE = true
			te = value
		}
	}
	switch {
	case v.status != 0:
	case hasCL && hasTE:
		v = verdict{http.StatusBadRequest, limitProtocol, "request with both Content-Length and Transfer-Encoding"}
	case hasTE && http10:
		v = verdict{http.StatusBadRequest, limitProtocol, "Transfer-Encoding on an HTTP/1.0 request"}
	}
	s.verdicts = append(s.verdicts, v)
	if v.status != 0 {
		// The connection closes after the answer: nothing after this
		// request is read as one.
		s.state = off
		return
	}
	switch {
	case hasTE:
		if last := te[bytes.LastIndexByte(te, ',')+1:]; bytes.EqualFold(bytes.TrimSpace(last), []byte("chunked")) {
			s.state = inChunkSize
			return
		}
		s.state = off
	case hasCL:
		n, err := strconv.ParseInt(string(cl), 10, 64)
		if err != nil || n < 0 {
			s.state = off
			return
		}
		s.left = n
		s.state = inHead
		if n > 0 {
			s.state = inBody
		}
	default:
		s.state = inHead
	}
}

// feedLine follows the line-shaped parts of a chunked body: a chunk-size
// line, the CRLF after a chunk's data, and trailer lines.
func (s *headScanner) feedLine(b []byte) []byte {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		if len(s.line)+len(b) > maxChunkLine {
			s.state = off
			return nil
		}
		s.line = append(s.line, b...)
		return nil
	}
	s.line = append(s.line, b[:i]...)
	rest := b[i+1:]
	line := bytes.TrimSuffix(s.line, []byte("\r"))
	s.line = s.line[:0]
	switch s.state {
	case inChunkEnd:
		s.state = inChunkSize
	case inTrailer:
		if len(line) == 0 {
			s.state = inHead
		}
	case inChunkSize:
		hex, _, _ := bytes.Cut(line, []byte(";"))
		n, err := strconv.ParseInt(string(bytes.TrimSpace(hex)), 16, 64)
		switch {
		case err != nil || n < 0:
			s.state = off
		case n == 0:
			s.state = inTrailer
		default:
			s.left = n
			s.state = inChunkData
		}
	}
	return rest
}

// next returns the verdict on the oldest request head not yet asked
// about; ok is false when the scanner has none (it stopped judging).
func (s *headScanner) next() (v verdict, ok bool) {
	if len(s.verdicts) == 0 {
		return verdict{}, false
	}
	v = s.verdicts[0]
	s.verdicts = s.verdicts[1:]
	return v, true
}
