// Package wire is the frame format between edged and a worker's Python
// process. edged has already parsed and validated the HTTP request, so the
// worker gets the WSGI environ ready-made and never parses HTTP:
//
//	request:  u32 envLen | u64 bodyLen | u64 deadline | env | body
//	          env = "KEY\x00VALUE\x00KEY\x00VALUE..." (latin-1, as WSGI wants)
//	          deadline: Unix nanoseconds after which the worker must not
//	          start the request (0: none)
//	response: u32 n | head             head = "WORKER\x00200 OK\x00Name\x00Value..."
//	          u32 n | chunk            repeated, n > 0
//	          u32 0                    end of body
//	          u32 0xFFFFFFFD | stats   end of body, with what the worker
//	                                   measured (Stats, 32 bytes)
//	          u32 0xFFFFFFFF           the app failed after the head
//	          u32 0xFFFFFFFE           instead of a head: the deadline had
//	                                   passed, the app did not run
//
// All integers are little-endian. A connection carries one request: edged
// opens one per request on the socket every worker takes from. When the
// client of a request goes away, edged shuts down its writing side of the
// connection; a worker that finds it so once it has read the request
// closes the connection without running the app.
package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

const (
	// MaxHead bounds the status line and headers of one response.
	MaxHead = 1 << 20
	// MaxChunk bounds one body chunk.
	MaxChunk = 1 << 30
	abort    = 0xFFFFFFFF
	expired  = 0xFFFFFFFE
	measured = 0xFFFFFFFD
	// statsLen is the size of Stats on the wire.
	statsLen = 32
	// prefix is the fixed part of a request frame.
	prefix = 20
)

// ErrAborted means the app raised after it had started its response.
var ErrAborted = errors.New("the app failed while sending its response")

// ErrBadHead means the response head broke the rules of HTTP or of the
// frame (the error says which): edged answers 502 rather than pass it on.
var ErrBadHead = errors.New("bad response head")

// ErrExpired means the worker took the request off the queue after its
// deadline and did not run it.
var ErrExpired = errors.New("the request waited past its deadline and was not run")

// Request builds one request frame. The zero value is ready to use.
type Request struct {
	buf []byte
}

// Reset empties the frame and reserves room for its prefix.
func (r *Request) Reset() {
	r.buf = append(r.buf[:0], make([]byte, prefix)...)
}

// Add appends one environ entry. Neither key nor value may hold a NUL; the
// caller has validated them (HTTP forbids NUL in headers).
func (r *Request) Add(key, value string) {
	r.next()
	r.buf = append(r.buf, key...)
	r.buf = append(r.buf, 0)
	r.buf = append(r.buf, value...)
}

// next readies the frame for one more entry: the prefix's room on a
// zero Request, a NUL after the entry before.
func (r *Request) next() {
	if len(r.buf) < prefix {
		r.Reset()
	} else if len(r.buf) > prefix {
		r.buf = append(r.buf, 0)
	}
}

// Frame fills in the prefix for a body of bodyLen bytes (sent after it)
// that must not start after deadline (zero: no deadline), and returns the
// bytes to write.
func (r *Request) Frame(bodyLen int64, deadline time.Time) []byte {
	if len(r.buf) < prefix {
		r.Reset()
	}
	binary.LittleEndian.PutUint32(r.buf[0:4], uint32(len(r.buf)-prefix))
	binary.LittleEndian.PutUint64(r.buf[4:12], uint64(bodyLen))
	var dl uint64
	if !deadline.IsZero() {
		dl = uint64(deadline.UnixNano())
	}
	binary.LittleEndian.PutUint64(r.buf[12:20], dl)
	return r.buf
}

// Head is a response's status and headers.
type Head struct {
	// Worker is the instance that answered (the N of workerd@N).
	Worker string
	Status int
	Reason string
	// Fields holds name, value, name, value... as the app gave them.
	Fields []string
}

// ReadHead reads the head frame. It checks that the status is an HTTP
// status code (100 to 599) and that every header name is a token and no
// value holds a control character, so a misbehaving app cannot split a
// response nor send a status no client knows.
func ReadHead(r *bufio.Reader, h *Head) error {
	n, err := readLen(r)
	if err != nil {
		return err
	}
	switch n {
	case abort:
		return ErrAborted
	case expired:
		return ErrExpired
	}
	if n > MaxHead {
		return fmt.Errorf("%w: response head of %d bytes is over the %d limit", ErrBadHead, n, MaxHead)
	}
	b, err := r.Peek(int(n))
	if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
		return unexpected(err)
	}
	var s string
	if err == nil {
		s = string(b)
		r.Discard(int(n))
	} else {
		// Bigger than the buffer: collect it as it arrives, so that a
		// length with no bytes behind it costs no memory.
		var sb strings.Builder
		for left := int(n); left > 0; {
			b, err := r.Peek(min(left, r.Size()))
			if len(b) == 0 {
				return unexpected(err)
			}
			sb.Write(b)
			r.Discard(len(b))
			left -= len(b)
		}
		s = sb.String()
	}
	worker, s, ok := strings.Cut(s, "\x00")
	if !ok {
		return fmt.Errorf("%w: response head %q names no worker", ErrBadHead, worker)
	}
	h.Worker = worker
	status, rest, _ := strings.Cut(s, "\x00")
	if len(status) < 3 || (len(status) > 3 && status[3] != ' ') {
		return fmt.Errorf("%w: bad status %q from the app", ErrBadHead, status)
	}
	code, err := strconv.Atoi(status[:3])
	if err != nil || code < 100 || code > 599 {
		return fmt.Errorf("%w: bad status %q from the app", ErrBadHead, status)
	}
	h.Status = code
	h.Reason = ""
	if len(status) > 4 {
		h.Reason = status[4:]
	}
	h.Fields = h.Fields[:0]
	for rest != "" {
		var name, value string
		name, rest, _ = strings.Cut(rest, "\x00")
		value, rest, _ = strings.Cut(rest, "\x00")
		if !token(name) {
			return fmt.Errorf("%w: bad header name %q from the app", ErrBadHead, name)
		}
		for i := 0; i < len(value); i++ {
			if c := value[i]; c < ' ' && c != '\t' || c == 0x7f {
				return fmt.Errorf("%w: header %s from the app holds a control character", ErrBadHead, name)
			}
		}
		h.Fields = append(h.Fields, name, value)
	}
	return nil
}

// Stats is what a worker measured of one request, sent with the end of
// its answer: u64 taken | u64 wall | u64 cpu | u32 pid | u32 rss.
type Stats struct {
	// Taken is when the worker took the request off the queue (Unix
	// nanoseconds); the zero Stats (Taken 0) means none came.
	Taken int64
	// Wall is how long the app took, from the call to the end of the
	// answer; CPU the CPU time of the thread that ran it meanwhile, or -1
	// where it cannot be told apart (the gevent class: one thread runs
	// every greenlet).
	Wall, CPU time.Duration
	// PID and RSS (KiB) are the worker's Python process's.
	PID, RSS uint32
}

// AppendStats appends the end frame carrying st.
func AppendStats(b []byte, st Stats) []byte {
	b = binary.LittleEndian.AppendUint32(b, measured)
	b = binary.LittleEndian.AppendUint64(b, uint64(st.Taken))
	b = binary.LittleEndian.AppendUint64(b, uint64(st.Wall))
	b = binary.LittleEndian.AppendUint64(b, uint64(st.CPU))
	b = binary.LittleEndian.AppendUint32(b, st.PID)
	return binary.LittleEndian.AppendUint32(b, st.RSS)
}

// ReadBody passes each body chunk to sink until the end frame. The slice is
// only valid during the call. It returns ErrAborted when the app failed
// part way, and io.ErrUnexpectedEOF when the input ends before the end
// frame. An end frame with measurements fills st, when st is not nil.
func ReadBody(r *bufio.Reader, sink func([]byte) error, st *Stats) error {
	for {
		n, err := readLen(r)
		if err != nil {
			return unexpected(err)
		}
		if n == 0 {
			return nil
		}
		if n == measured {
			b, err := r.Peek(statsLen)
			if err != nil {
				return unexpected(err)
			}
			if st != nil {
				le := binary.LittleEndian
				*st = Stats{Taken: int64(le.Uint64(b)), Wall: time.Duration(le.Uint64(b[8:])), CPU: time.Duration(int64(le.Uint64(b[16:]))),
					PID: le.Uint32(b[24:]), RSS: le.Uint32(b[28:])}
			}
			r.Discard(statsLen)
			return nil
		}
		if n == abort {
			return ErrAborted
		}
		if n > MaxChunk {
			return fmt.Errorf("body chunk of %d bytes is over the %d limit", n, MaxChunk)
		}
		for left := int(n); left > 0; {
			want := min(left, r.Size())
			b, err := r.Peek(want)
			if len(b) == 0 && err != nil {
				return unexpected(err)
			}
			if err := sink(b); err != nil {
				return err
			}
			r.Discard(len(b))
			left -= len(b)
		}
	}
}

func readLen(r *bufio.Reader) (uint32, error) {
	b, err := r.Peek(4)
	if err != nil {
		if len(b) == 0 && err == io.EOF {
			return 0, io.EOF
		}
		return 0, unexpected(err)
	}
	n := binary.LittleEndian.Uint32(b)
	r.Discard(4)
	return n, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func token(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		switch c {
		case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
			continue
		}
		return false
	}
	return true
}

// AddHeader appends an HTTP header as the environ entry HTTP_NAME (upper
// case, "-" as "_"), its values joined by sep.
func (r *Request) AddHeader(name string, values []string, sep string) {
	r.next()
	r.buf = append(r.buf, "HTTP_"...)
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z':
			c -= 'a' - 'A'
		case c == '-':
			c = '_'
		}
		r.buf = append(r.buf, c)
	}
	r.buf = append(r.buf, 0)
	for i, v := range values {
		if i > 0 {
			r.buf = append(r.buf, sep...)
		}
		r.buf = append(r.buf, v...)
	}
}
