package wire

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"time"
)

// The worker's side of the format, in Go: what the Python worker does,
// for workers written in Go (the tests' fakes) and for checking the two
// sides against each other.

// AppendHead appends a head frame: the worker's name, the status line
// ("200 OK") and the header names and values.
func AppendHead(b []byte, worker, status string, fields ...string) []byte {
	n := len(worker) + 1 + len(status)
	for _, f := range fields {
		n += 1 + len(f)
	}
	b = AppendHeader(b, TypeHead, 0, n)
	b = append(b, worker...)
	b = append(b, 0)
	b = append(b, status...)
	for _, f := range fields {
		b = append(b, 0)
		b = append(b, f...)
	}
	return b
}

// AppendAccept appends an accept frame: the worker's name, the
// subprotocol chosen ("" for none) and headers for the answer.
func AppendAccept(b []byte, worker, subprotocol string, fields ...string) []byte {
	at := len(b)
	b = AppendHead(b, worker, subprotocol, fields...)
	b[at+1] = byte(TypeAccept)
	return b
}

// AppendBody appends one body frame carrying data (not empty).
func AppendBody(b, data []byte) []byte {
	return append(AppendHeader(b, TypeBody, 0, len(data)), data...)
}

// AppendEnd appends an end frame without measurements.
func AppendEnd(b []byte) []byte { return AppendHeader(b, TypeEnd, 0, 0) }

// Incoming is a request as a worker reads it.
type Incoming struct {
	// Deadline is when the request stops being worth starting (zero:
	// never).
	Deadline time.Time
	// Session says the request opens a long-lived exchange.
	Session            bool
	TLSVersion, Cipher uint16
	// Fields holds the RequestFields by name.
	Fields map[string]string
	// Headers holds name, value, name, value... in the order sent.
	Headers []string
	Body    []byte
}

// Header is the first value of the header name (as sent), and whether
// there is one.
func (in *Incoming) Header(name string) (string, bool) {
	for i := 0; i+1 < len(in.Headers); i += 2 {
		if in.Headers[i] == name {
			return in.Headers[i+1], true
		}
	}
	return "", false
}

// ReadRequest reads a request frame and its body, of at most maxBody
// bytes. It returns io.EOF when the input ends before a frame begins.
func ReadRequest(r *bufio.Reader, maxBody int64) (*Incoming, error) {
	t, flags, n, err := readHeader(r)
	if err != nil {
		return nil, err
	}
	if t != TypeRequest {
		return nil, fmt.Errorf("%w: a frame of type %d where a request was due", ErrFrame, t)
	}
	if n < RequestFixed || n > MaxHead {
		return nil, fmt.Errorf("%w: request frame of %d bytes", ErrFrame, n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return nil, unexpected(err)
	}
	le := binary.LittleEndian
	in := &Incoming{TLSVersion: le.Uint16(p[16:]), Cipher: le.Uint16(p[18:]), Fields: map[string]string{}, Session: flags&FlagSession != 0}
	if dl := le.Uint64(p); dl != 0 {
		in.Deadline = time.Unix(0, int64(dl))
	}
	bodyLen := le.Uint64(p[8:])
	if bodyLen > uint64(maxBody) {
		return nil, fmt.Errorf("%w: a body of %d bytes, over the %d this reader takes", ErrFrame, bodyLen, maxBody)
	}
	strs := strings.Split(string(p[RequestFixed:]), "\x00")
	if len(strs) < len(RequestFields) || (len(strs)-len(RequestFields))%2 != 0 {
		return nil, fmt.Errorf("%w: request frame with %d strings: want %d fields, then name and value pairs", ErrFrame, len(strs), len(RequestFields))
	}
	for i, name := range RequestFields {
		in.Fields[name] = strs[i]
	}
	in.Headers = strs[len(RequestFields):]
	in.Body = make([]byte, 0, bodyLen)
	for uint64(len(in.Body)) < bodyLen {
		t, _, n, err := readHeader(r)
		if err != nil {
			return nil, unexpected(err)
		}
		if t != TypeBody || n == 0 || uint64(n) > bodyLen-uint64(len(in.Body)) {
			return nil, fmt.Errorf("%w: a frame of type %d and %d bytes where %d bytes of body were due", ErrFrame, t, n, bodyLen-uint64(len(in.Body)))
		}
		at := len(in.Body)
		in.Body = in.Body[:at+int(n)]
		if _, err := io.ReadFull(r, in.Body[at:]); err != nil {
			return nil, unexpected(err)
		}
	}
	return in, nil
}

// Environ is the WSGI environ's CGI keys as the Python side builds them
// from in (edged_worker/wsgi.py's environ): SCRIPT_NAME split off the
// path at the root, each header as HTTP_NAME with repeated ones joined by
// "," ("; " for cookies), Content-Type and Content-Length as CONTENT_*.
// The tests hold the two to each other.
func (in *Incoming) Environ() map[string]string {
	f := in.Fields
	env := map[string]string{
		"REQUEST_METHOD":  f["method"],
		"SCRIPT_NAME":     "",
		"QUERY_STRING":    f["query"],
		"RAW_URI":         f["target"],
		"REQUEST_URI":     f["target"],
		"SERVER_PROTOCOL": f["protocol"],
		"SERVER_NAME":     f["server_name"],
		"SERVER_PORT":     f["server_port"],
		"REMOTE_ADDR":     f["client_addr"],
		"wsgi.url_scheme": f["scheme"],
	}
	path, root := f["path"], f["root"]
	if root != "" && (path == root || strings.HasPrefix(path, root+"/")) {
		env["SCRIPT_NAME"] = root
		path = path[len(root):]
	}
	env["PATH_INFO"] = path
	if p := f["client_port"]; p != "" {
		env["REMOTE_PORT"] = p
	}
	for i := 0; i+1 < len(in.Headers); i += 2 {
		name, value := in.Headers[i], in.Headers[i+1]
		var key string
		switch name {
		case "Content-Type":
			key = "CONTENT_TYPE"
		case "Content-Length":
			key = "CONTENT_LENGTH"
		default:
			key = "HTTP_" + strings.ReplaceAll(strings.ToUpper(name), "-", "_")
		}
		if old, ok := env[key]; ok {
			sep := ","
			if key == "HTTP_COOKIE" {
				sep = "; "
			}
			value = old + sep + value
		}
		env[key] = value
	}
	return env
}
