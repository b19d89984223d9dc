// Package wire is the frame format between edged and a worker's Python
// process. edged has already parsed and validated the HTTP request; what
// it sends is the request as neutral facts (method, raw target, decoded
// path, the header list, the peer, TLS facts), from which the worker
// builds a WSGI environ or an ASGI scope. The worker never parses HTTP.
//
// Everything on a worker connection is a frame, as FastCGI's records are:
//
//	u8 version | u8 type | u16 flags | u32 length | payload
//
// little-endian, Version in every frame (a worker of another release is
// told from a broken frame), the payload at most MaxHead or MaxChunk
// bytes. One request goes each way per connection (see Type):
//
//	edged → worker: Request, then the body as Body frames
//	worker → edged: Head, Body..., End; or Abort after the head (the
//	                app failed part way); or Expired instead of a head
//	                (the request waited past its deadline, not run)
//
// When the client of a request goes away, edged shuts down its writing
// side of the connection; a worker that finds it so once it has read the
// request closes the connection without running the app.
//
// The Python side (pkg/worker/python, edged_worker/frames.py) defines the
// same numbers; a test holds the two to each other. A worker also answers
// the version before (edged_worker/legacy.py), and the packages restart
// the workers before edged: an upgrade across a new version fails no
// request.
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

// Version is the frame format's version, the first byte of every frame.
const Version = 2

// Type is what a frame carries.
type Type uint8

// Frame types. The numbers are the protocol: never reuse one.
const (
	// TypeRequest (edged → worker) opens an exchange: Deadline, the body
	// length, TLS facts (RequestFixed bytes), then RequestFields and the
	// header list as NUL-separated latin-1 strings.
	TypeRequest Type = 1
	// TypeBody is a piece of the request body (edged → worker) or of the
	// answer's (worker → edged). Never empty.
	TypeBody Type = 2
	// TypeHead (worker → edged) is the answer's head: "WORKER\x00200
	// OK\x00Name\x00Value...".
	TypeHead Type = 3
	// TypeEnd (worker → edged) ends the answer; its payload is empty or
	// the worker's Stats (StatsLen bytes).
	TypeEnd Type = 4
	// TypeAbort (worker → edged): the app failed after its head went out.
	TypeAbort Type = 5
	// TypeExpired (worker → edged), instead of a head: the request was
	// taken after its deadline and not run.
	TypeExpired Type = 6
	// TypeGone (edged → worker), after a whole request: its client went
	// away before a worker took it. A worker that reads it with the
	// request does not run the request (and needs no system call to
	// learn it).
	TypeGone Type = 10
)

// HeaderLen is the size of a frame's header.
const HeaderLen = 8

const (
	// MaxHead bounds a request frame and the status line and headers of
	// one response.
	MaxHead = 1 << 20
	// MaxChunk bounds one body frame.
	MaxChunk = 1 << 30
	// StatsLen is the size of Stats on the wire.
	StatsLen = 32
	// RequestFixed is the fixed part of a request frame's payload:
	// u64 deadline | u64 body length | u16 TLS version | u16 cipher
	// suite | u32 zero.
	RequestFixed = 24
)

// RequestFields are the strings a request frame carries before the
// header list, in this order. Target is the request target as the client
// sent it; Path is its path part percent-decoded (latin-1, as WSGI wants
// it), Query its query string undecoded. Root is the prefix the site
// mounts the app at (app.script_name), "" for none. Server is the host
// and port the client addressed; Client the peer's address and port
// after trusted proxies. Protocol is "HTTP/1.1" or "HTTP/2.0".
var RequestFields = []string{
	"method", "scheme", "protocol", "target", "path", "query", "root",
	"server_name", "server_port", "client_addr", "client_port", "request_id",
}

// ErrAborted means the app raised after it had started its response.
var ErrAborted = errors.New("the app failed while sending its response")

// ErrBadHead means the response head broke the rules of HTTP or of the
// frame (the error says which): edged answers 502 rather than pass it on.
var ErrBadHead = errors.New("bad response head")

// ErrExpired means the worker took the request off the queue after its
// deadline and did not run it.
var ErrExpired = errors.New("the request waited past its deadline and was not run")

// ErrFrame means a frame broke the format: another version, a type out
// of place, a length over its bound.
var ErrFrame = errors.New("bad frame")

// AppendHeader appends a frame header.
func AppendHeader(b []byte, t Type, flags uint16, n int) []byte {
	b = append(b, Version, byte(t))
	b = binary.LittleEndian.AppendUint16(b, flags)
	return binary.LittleEndian.AppendUint32(b, uint32(n))
}

// Request builds one request frame. The zero value is ready to use: Add
// the RequestFields in order, then the headers.
type Request struct {
	buf    []byte
	tls    [2]uint16
	fields int
	end    int // the end of the strings: Frame may append after it
	flags  uint16
}

const requestStart = HeaderLen + RequestFixed

// Reset empties the frame.
func (r *Request) Reset() {
	r.buf = append(r.buf[:0], make([]byte, requestStart)...)
	r.tls = [2]uint16{}
	r.fields = 0
	r.end = requestStart
	r.flags = 0
}

// OpenSession makes the request open a long-lived exchange (FlagSession):
// a WebSocket, whose messages follow the worker's Accept.
func (r *Request) OpenSession() {
	if len(r.buf) < requestStart {
		r.Reset()
	}
	r.flags |= FlagSession
}

// Add appends one string: a request field, or a header's name or value.
// It may not hold a NUL; the caller has validated it (HTTP forbids NUL in
// headers, and edged refuses a path that decodes to one).
func (r *Request) Add(s string) {
	if len(r.buf) < requestStart {
		r.Reset()
	}
	if r.fields > 0 {
		r.buf = append(r.buf, 0)
	}
	r.buf = append(r.buf, s...)
	r.fields++
	r.end = len(r.buf)
}

// AddHeader appends a header: its name as HTTP has it, and its value.
func (r *Request) AddHeader(name, value string) {
	r.Add(name)
	r.Add(value)
}

// SetTLS records the TLS version and cipher suite the request came over
// (crypto/tls's numbers; zero for none).
func (r *Request) SetTLS(version, cipher uint16) { r.tls = [2]uint16{version, cipher} }

// Frame fills in the frame for a body of bodyLen bytes (sent after it
// with BodyWriter or as one Body frame) that must not start after
// deadline (zero: no deadline), and returns the bytes to write. With
// bodyLen from 1 to MaxChunk, the header of the one Body frame is
// appended too: the body's bytes follow at once.
func (r *Request) Frame(bodyLen int64, deadline time.Time) []byte {
	if len(r.buf) < requestStart {
		r.Reset()
	}
	r.buf = r.buf[:r.end]
	b := r.buf
	b[0], b[1] = Version, byte(TypeRequest)
	binary.LittleEndian.PutUint16(b[2:], r.flags)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)-HeaderLen))
	p := b[HeaderLen:]
	var dl uint64
	if !deadline.IsZero() {
		dl = uint64(deadline.UnixNano())
	}
	binary.LittleEndian.PutUint64(p[0:], dl)
	binary.LittleEndian.PutUint64(p[8:], uint64(bodyLen))
	binary.LittleEndian.PutUint16(p[16:], r.tls[0])
	binary.LittleEndian.PutUint16(p[18:], r.tls[1])
	binary.LittleEndian.PutUint32(p[20:], 0)
	if bodyLen > 0 && bodyLen <= MaxChunk {
		r.buf = AppendHeader(r.buf, TypeBody, 0, int(bodyLen))
	}
	return r.buf
}

// BodyWriter frames what is written to it as Body frames, for a body of
// over MaxChunk bytes whose first frame header Frame could not write.
type BodyWriter struct {
	W    io.Writer
	Left int64 // body bytes still to come
	in   int64 // bytes left in the current frame
}

func (bw *BodyWriter) Write(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		if bw.in == 0 {
			if bw.Left <= 0 {
				return total, errors.New("body longer than declared")
			}
			bw.in = min(bw.Left, MaxChunk)
			bw.Left -= bw.in
			if _, err := bw.W.Write(AppendHeader(nil, TypeBody, 0, int(bw.in))); err != nil {
				return total, err
			}
		}
		n, err := bw.W.Write(p[:min(int64(len(p)), bw.in)])
		total += n
		bw.in -= int64(n)
		p = p[n:]
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// Head is a response's status and headers.
type Head struct {
	// Worker is the instance that answered (the N of workerd@N).
	Worker string
	Status int
	Reason string
	// Fields holds name, value, name, value... as the app gave them.
	Fields []string
	// Subprotocol is what an accepted long-lived exchange speaks (the
	// WebSocket subprotocol the app chose), "" for none.
	Subprotocol string
	// JSON is the CPU time the app spent encoding JSON before the head
	// went out (the head frame's flags, in JSONUnits; 0 from a worker
	// that does not measure it).
	JSON time.Duration
}

// JSONUnit is the unit of the head frame's flags: the JSON time.
const JSONUnit = 100 * time.Microsecond

// readHeader reads a frame header, checking its version.
func readHeader(r *bufio.Reader) (Type, uint16, uint32, error) {
	b, err := r.Peek(HeaderLen)
	if err != nil {
		if len(b) == 0 && err == io.EOF {
			return 0, 0, 0, io.EOF
		}
		return 0, 0, 0, unexpected(err)
	}
	if b[0] != Version {
		return 0, 0, 0, fmt.Errorf("%w: version %d where %d was due (a worker of another release? restart the workers)", ErrFrame, b[0], Version)
	}
	t, flags, n := Type(b[1]), binary.LittleEndian.Uint16(b[2:]), binary.LittleEndian.Uint32(b[4:])
	r.Discard(HeaderLen)
	return t, flags, n, nil
}

// ReadHead reads the head frame. It checks that the status is an HTTP
// status code (100 to 599) and that every header name is a token and no
// value holds a control character, so a misbehaving app cannot split a
// response nor send a status no client knows.
func ReadHead(r *bufio.Reader, h *Head) error {
	t, flags, n, err := readHeader(r)
	if err != nil {
		return err
	}
	if t == TypeHead {
		h.JSON = time.Duration(flags) * JSONUnit
	}
	return headFrame(r, t, n, h)
}

// headFrame reads the rest of a frame of type t and length n that stands
// where an answer's head is due.
func headFrame(r *bufio.Reader, t Type, n uint32, h *Head) error {
	switch t {
	case TypeHead:
		return readHead(r, n, h, false)
	case TypeAbort:
		return ErrAborted
	case TypeExpired:
		return ErrExpired
	}
	return fmt.Errorf("%w: a frame of type %d where the head was due", ErrBadHead, t)
}

// readHead reads a head's payload of n bytes into h: a status line, or
// for an accept the subprotocol, then the headers.
func readHead(r *bufio.Reader, n uint32, h *Head, accept bool) error {
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
	h.Subprotocol = ""
	if accept {
		if !token(status) && status != "" {
			return fmt.Errorf("%w: bad subprotocol %q from the app", ErrBadHead, status)
		}
		h.Status, h.Reason, h.Subprotocol = 101, "Switching Protocols", status
		return readFields(rest, h)
	}
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
	return readFields(rest, h)
}

// readFields checks and splits a head's header names and values.
func readFields(rest string, h *Head) error {
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
	// Key is the worker's report on the app's secret key (the end frame's
	// flags; 0 from a worker that sends none).
	Key KeyReport
}

// KeyReport is what a worker judged of the app's secret key at import,
// in 16 bits: whether there is a report, where the key came from, whether
// it is weak, whether Django runs with DEBUG or ALLOWED_HOSTS = ['*'],
// and a 10-bit keyed fingerprint that tells two workers' keys apart (and
// says nothing of the key).
type KeyReport uint16

// KeyReport's parts.
const (
	KeyPresent      KeyReport = 1 << 15
	KeyWeak         KeyReport = 1 << 11
	KeyDjangoUnsafe KeyReport = 1 << 10
	keySourceShift            = 12
	keyPrintMask              = 0x3ff
)

// KeySource is where the app's key came from.
type KeySource uint8

// The sources a worker tells apart.
const (
	KeyNone        KeySource = iota // the app has no key
	KeyEnvironment                  // an environment variable
	KeyCredential                   // an [app.credentials] one: a systemd credential
	KeyLiteral                      // a literal in the app's code
	KeyDefault                      // a framework's or tutorial's default ("django-insecure-…", "dev")
	KeyProcess                      // none of those: made in the process, or read from elsewhere
)

var keySources = [...]string{"none", "environment", "credential", "literal", "default", "process"}

func (s KeySource) String() string {
	if int(s) < len(keySources) {
		return keySources[s]
	}
	return "unknown"
}

// Source is where the key came from.
func (k KeyReport) Source() KeySource { return KeySource(k >> keySourceShift & 7) }

// Print is the key's fingerprint.
func (k KeyReport) Print() uint16 { return uint16(k & keyPrintMask) }

// AppendStats appends the end frame carrying st.
func AppendStats(b []byte, st Stats) []byte {
	b = AppendHeader(b, TypeEnd, uint16(st.Key), StatsLen)
	b = binary.LittleEndian.AppendUint64(b, uint64(st.Taken))
	b = binary.LittleEndian.AppendUint64(b, uint64(st.Wall))
	b = binary.LittleEndian.AppendUint64(b, uint64(st.CPU))
	b = binary.LittleEndian.AppendUint32(b, st.PID)
	return binary.LittleEndian.AppendUint32(b, st.RSS)
}

// ReadBody passes each body piece to sink until the end frame. The slice
// is only valid during the call. It returns ErrAborted when the app
// failed part way, and io.ErrUnexpectedEOF when the input ends before the
// end frame. An end frame with measurements fills st, when st is not nil.
func ReadBody(r *bufio.Reader, sink func([]byte) error, st *Stats) error {
	for {
		t, flags, n, err := readHeader(r)
		if err != nil {
			return unexpected(err)
		}
		switch t {
		case TypeBody:
		case TypeEnd:
			if n == 0 {
				return nil
			}
			if n != StatsLen {
				return fmt.Errorf("%w: end frame of %d bytes, want 0 or %d", ErrFrame, n, StatsLen)
			}
			b, err := r.Peek(StatsLen)
			if err != nil {
				return unexpected(err)
			}
			if st != nil {
				le := binary.LittleEndian
				*st = Stats{Taken: int64(le.Uint64(b)), Wall: time.Duration(le.Uint64(b[8:])), CPU: time.Duration(int64(le.Uint64(b[16:]))),
					PID: le.Uint32(b[24:]), RSS: le.Uint32(b[28:]), Key: KeyReport(flags)}
			}
			r.Discard(StatsLen)
			return nil
		case TypeAbort:
			return ErrAborted
		default:
			return fmt.Errorf("%w: a frame of type %d in a response body", ErrFrame, t)
		}
		if n > MaxChunk {
			return fmt.Errorf("%w: body frame of %d bytes is over the %d limit", ErrFrame, n, MaxChunk)
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

// Frame types of a long-lived exchange (a WebSocket): a Request with
// FlagSession opens it; the worker answers Accept, or refuses with an
// HTTP answer (Head, Body..., End); then Message and Close frames go both
// ways until each side has sent its Close.
const (
	// TypeAccept (worker → edged): the app accepted the exchange. Its
	// payload: "WORKER\x00SUBPROTOCOL\x00Name\x00Value..." (headers for
	// the answer that switches protocols).
	TypeAccept Type = 7
	// TypeMessage carries one whole message; FlagText says it is text
	// (UTF-8, checked by edged on the way in), else binary.
	TypeMessage Type = 8
	// TypeClose ends the exchange from one side: u16 code | reason.
	TypeClose Type = 9
)

// Frame flags.
const (
	// FlagSession, on a Request, opens a long-lived exchange.
	FlagSession uint16 = 1
	// FlagText, on a Message, says it is text.
	FlagText uint16 = 1
)

// Message is one message of a long-lived exchange, or its close.
type Message struct {
	// Close says the frame was a Close: Code and Data (the reason) say
	// why.
	Close bool
	Text  bool
	Code  uint16
	Data  []byte
}

// AppendMessage appends m as a Message or Close frame.
func AppendMessage(b []byte, m Message) []byte {
	if m.Close {
		b = AppendHeader(b, TypeClose, 0, 2+len(m.Data))
		b = binary.LittleEndian.AppendUint16(b, m.Code)
		return append(b, m.Data...)
	}
	var flags uint16
	if m.Text {
		flags = FlagText
	}
	return append(AppendHeader(b, TypeMessage, flags, len(m.Data)), m.Data...)
}

// ErrTooBig means a message was longer than the reader takes.
var ErrTooBig = errors.New("message over the size limit")

// ReadMessage reads the next Message or Close frame into m, its Data
// reusing m.Data's room; a message over max bytes is ErrTooBig (its
// bytes are left unread: the exchange cannot go on).
func ReadMessage(r *bufio.Reader, m *Message, max int) error {
	t, flags, n, err := readHeader(r)
	if err != nil {
		return err
	}
	switch t {
	case TypeMessage, TypeClose:
	default:
		return fmt.Errorf("%w: a frame of type %d where a message was due", ErrFrame, t)
	}
	if int64(n) > int64(max) {
		return fmt.Errorf("%w: %d bytes, over the %d limit", ErrTooBig, n, max)
	}
	data := m.Data[:0]
	if cap(data) < int(n) {
		data = make([]byte, n)
	}
	data = data[:n]
	if _, err := io.ReadFull(r, data); err != nil {
		return unexpected(err)
	}
	*m = Message{Data: data}
	if t == TypeClose {
		if n < 2 {
			return fmt.Errorf("%w: a close frame of %d bytes, want at least 2", ErrFrame, n)
		}
		m.Close, m.Code, m.Data = true, binary.LittleEndian.Uint16(data), data[2:]
		return nil
	}
	m.Text = flags&FlagText != 0
	return nil
}

// ReadOpen reads the worker's first frame of a long-lived exchange: an
// Accept (it returns true, with the worker, Subprotocol and headers in h,
// Status 101) or a refusal's head, checked as ReadHead checks it (it
// returns false; the body follows as for any answer).
func ReadOpen(r *bufio.Reader, h *Head) (bool, error) {
	t, _, n, err := readHeader(r)
	if err != nil {
		return false, err
	}
	if t == TypeAccept {
		return true, readHead(r, n, h, true)
	}
	return false, headFrame(r, t, n, h)
}
