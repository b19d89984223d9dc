package wire

import (
	"bufio"
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// FuzzReadResponse feeds arbitrary bytes to ReadHead and ReadBody as edge
// reads a worker's answer. Neither may panic, neither may allocate for a
// length whose bytes never arrive, and whatever head is accepted must be
// safe to turn into HTTP header lines.
func FuzzReadResponse(f *testing.F) {
	for _, seed := range [][]byte{
		cat(head("200 OK\x00Content-Type\x00text/plain"), frame("hello"), endF),
		cat(head("204"), endF),
		cat(head("599 Last"), endF),
		cat(head("600 Past"), endF),
		cat(head("404 Not Found\x00Content-Length\x009"), frame("not "), frame("found"), endF),
		cat(head("302 Found\x00Location\x00/next\x00Set-Cookie\x00a=1\x00Set-Cookie\x00b=2"), endF),
		cat(head("200 OK\x00X\x00caf\xe9\tx"), frame("partial"), abortF),
		cat(head("500 Internal Server Error\x00Content-Type\x00text/plain; charset=utf-8"), frame("Internal Server Error\n"), endF),
		cat(head("200 OK\x00X-Big\x00"+strings.Repeat("h", 4100)), frame(strings.Repeat("b", 4100)), endF),
		cat(head("200 OK"), endF, head("201 Created"), frame("again"), endF),
		abortF,
		hdr(TypeHead, MaxHead),
		cat(hdr(TypeHead, MaxHead), []byte("1\x00200 OK\x00")),
		expiredF,
		cat(head("200 OK"), hdr(TypeBody, MaxChunk), []byte("abc")),
		cat(head("200 OK"), hdr(TypeBody, MaxChunk+1)),
		cat(head("200 OK\x00Bad Name\x00v"), endF),
		cat(head("200 OK\x00X\x00a\r\nb"), endF),
		[]byte{1, 3, 0, 0, 0, 0, 0, 0},
		cat(head("200 OK"), hdr(TypeRequest, 3), []byte("abc")),
		cat(head("200 OK"), hdr(TypeEnd, 5)),
		nil,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var br *bufio.Reader
		var h Head
		var headErr, bodyErr error
		var st Stats
		var body int
		read := func() {
			br = bufio.NewReaderSize(bytes.NewReader(in), 4096) // counted: 4 KiB
			headErr = ReadHead(br, &h)
			if headErr != nil {
				return
			}
			bodyErr = ReadBody(br, func(b []byte) error {
				if len(b) == 0 || len(b) > br.Size() {
					t.Errorf("sink got %d bytes; want 1 to %d", len(b), br.Size())
				}
				body += len(b)
				return nil
			}, &st)
		}
		// What is kept is the head (at most the input) and its Fields, a
		// slice of string headers that can be a few tens of times the
		// bytes it indexes. A declared length must cost nothing more.
		limit := uint64(64*len(in) + 64<<10)
		if alloc := allocated(read); alloc > limit {
			t.Fatalf("%d bytes of input allocated %d bytes, over %d (head err %v, body err %v)", len(in), alloc, limit, headErr, bodyErr)
		}
		if headErr != nil {
			if body != 0 {
				t.Fatalf("ReadBody ran after ReadHead failed")
			}
			return
		}
		if body > len(in) {
			t.Fatalf("body of %d bytes from %d bytes of input", body, len(in))
		}
		if h.Status < 100 || h.Status > 599 {
			t.Fatalf("accepted status %d", h.Status)
		}
		if len(h.Fields)%2 != 0 {
			t.Fatalf("odd number of fields %q", h.Fields)
		}
		for i := 0; i < len(h.Fields); i += 2 {
			name, value := h.Fields[i], h.Fields[i+1]
			if !isToken(name) {
				t.Fatalf("accepted header name %q, not a token", name)
			}
			if strings.ContainsAny(value, "\r\n\x00") {
				t.Fatalf("accepted header %s value %q holding CR, LF or NUL", name, value)
			}
		}
		// An accepted head means the same when written out again.
		again := fmt.Sprintf("%s\x00%03d", h.Worker, h.Status)
		if h.Reason != "" {
			again += " " + h.Reason
		}
		for _, s := range h.Fields {
			again += "\x00" + s
		}
		var h2 Head
		if err := ReadHead(bufio.NewReader(bytes.NewReader(headRaw(again))), &h2); err != nil || !reflect.DeepEqual(h, h2) {
			t.Fatalf("head %+v written as %q reads back as %+v, %v", h, again, h2, err)
		}
	})
}

// isToken is RFC 9110's token, written independently of token().
func isToken(s string) bool {
	const tchar = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if strings.IndexByte(tchar, c) < 0 {
			return false
		}
	}
	return true
}

// FuzzReadSession feeds arbitrary bytes to ReadOpen and then ReadMessage
// as the edge reads a worker's side of a long-lived exchange: no panic,
// no message over the limit, no allocation for bytes that never came.
func FuzzReadSession(f *testing.F) {
	for _, seed := range [][]byte{
		cat(AppendAccept(nil, "1", "chat", "Set-Cookie", "a=1"), AppendMessage(nil, Message{Text: true, Data: []byte("hi")}), AppendMessage(nil, Message{Close: true, Code: 1000})),
		cat(AppendAccept(nil, "1", ""), AppendMessage(nil, Message{Data: make([]byte, 70)})),
		cat(head("403 Forbidden"), endF),
		cat(AppendAccept(nil, "1", "bad name")),
		cat(AppendAccept(nil, "1", ""), hdr(TypeClose, 1), []byte{1}),
		cat(AppendAccept(nil, "1", ""), hdr(TypeMessage, MaxChunk)),
	} {
		f.Add(seed)
	}
	const max = 64
	f.Fuzz(func(t *testing.T, in []byte) {
		read := func() {
			r := bufio.NewReaderSize(bytes.NewReader(in), 16)
			var h Head
			ok, err := ReadOpen(r, &h)
			if err != nil || !ok {
				return
			}
			if h.Status != 101 {
				t.Fatalf("accepted with status %d", h.Status)
			}
			var m Message
			for ReadMessage(r, &m, max) == nil {
				if len(m.Data) > max {
					t.Fatalf("a message of %d bytes over the %d limit", len(m.Data), max)
				}
			}
		}
		if alloc := allocated(read); alloc > uint64(64*len(in)+64<<10) {
			t.Fatalf("%d bytes of input allocated %d bytes", len(in), alloc)
		}
	})
}
