package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// hdr is a frame header of type t for a payload of n bytes.
func hdr(t Type, n uint32) []byte {
	return AppendHeader(nil, t, 0, int(n))
}

// frame is one body frame carrying s.
func frame(s string) []byte {
	return append(hdr(TypeBody, uint32(len(s))), s...)
}

// headRaw is a head frame whose payload is s.
func headRaw(s string) []byte {
	return append(hdr(TypeHead, uint32(len(s))), s...)
}

// head is worker 3's head frame for s, a status and headers.
func head(s string) []byte {
	return headRaw("3\x00" + s)
}

var (
	endF     = hdr(TypeEnd, 0)
	abortF   = hdr(TypeAbort, 0)
	expiredF = hdr(TypeExpired, 0)
)

// cat joins byte slices.
func cat(parts ...[]byte) []byte {
	return bytes.Join(parts, nil)
}

// reqFrame is the request frame for strs, a body of bodyLen bytes and a
// deadline of dl (Unix ns), as the format says, written out by hand.
func reqFrame(bodyLen uint64, dl uint64, tls [2]uint16, strs ...string) []byte {
	payload := binary.LittleEndian.AppendUint64(nil, dl)
	payload = binary.LittleEndian.AppendUint64(payload, bodyLen)
	payload = binary.LittleEndian.AppendUint16(payload, tls[0])
	payload = binary.LittleEndian.AppendUint16(payload, tls[1])
	payload = append(payload, 0, 0, 0, 0)
	payload = append(payload, strings.Join(strs, "\x00")...)
	out := append([]byte{2, 1, 0, 0}, binary.LittleEndian.AppendUint32(nil, uint32(len(payload)))...)
	out = append(out, payload...)
	if bodyLen > 0 && bodyLen <= MaxChunk {
		out = append(out, 2, 2, 0, 0)
		out = binary.LittleEndian.AppendUint32(out, uint32(bodyLen))
	}
	return out
}

func TestRequest(t *testing.T) {
	tests := []struct {
		name    string
		build   func(r *Request)
		bodyLen int64
		want    []byte
	}{
		{
			name:  "zero value",
			build: func(r *Request) {},
			want:  reqFrame(0, 0, [2]uint16{}),
		},
		{
			name:  "one string",
			build: func(r *Request) { r.Add("GET") },
			want:  reqFrame(0, 0, [2]uint16{}, "GET"),
		},
		{
			name: "strings are NUL separated, empty ones kept",
			build: func(r *Request) {
				r.Add("POST")
				r.Add("")
				r.Add("/caf\xe9")
			},
			bodyLen: 10,
			want:    reqFrame(10, 0, [2]uint16{}, "POST", "", "/caf\xe9"),
		},
		{
			name:    "a body over MaxChunk: no body header",
			build:   func(r *Request) { r.Add("A") },
			bodyLen: 1<<40 + 0x0102,
			want:    reqFrame(1<<40+0x0102, 0, [2]uint16{}, "A"),
		},
		{
			name: "headers are names and values as given",
			build: func(r *Request) {
				r.Add("GET")
				r.AddHeader("Content-Type", "text/plain")
				r.AddHeader("Cookie", "a=1")
			},
			want: reqFrame(0, 0, [2]uint16{}, "GET", "Content-Type", "text/plain", "Cookie", "a=1"),
		},
		{
			name:  "TLS facts",
			build: func(r *Request) { r.Add("GET"); r.SetTLS(0x0304, 0x1301) },
			want:  reqFrame(0, 0, [2]uint16{0x0304, 0x1301}, "GET"),
		},
		{
			name: "Reset forgets earlier strings and TLS",
			build: func(r *Request) {
				r.Add("OLD")
				r.SetTLS(1, 2)
				r.Frame(99, time.Time{})
				r.Reset()
				r.Add("NEW")
			},
			want: reqFrame(0, 0, [2]uint16{}, "NEW"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Request
			tt.build(&r)
			got := r.Frame(tt.bodyLen, time.Time{})
			if !bytes.Equal(got, tt.want) {
				t.Errorf("Frame(%d)\n got  %q\n want %q", tt.bodyLen, got, tt.want)
			}
			// Calling it again gives the same frame.
			if again := r.Frame(tt.bodyLen, time.Time{}); !bytes.Equal(again, tt.want) {
				t.Errorf("second Frame(%d)\n got  %q\n want %q", tt.bodyLen, again, tt.want)
			}
			// And with another body length, the one header for it.
			if again := r.Frame(0, time.Time{}); !bytes.Equal(again, reqFrameLen(tt.want, tt.bodyLen)) {
				t.Errorf("Frame(0) after Frame(%d)\n got  %q", tt.bodyLen, again)
			}
		})
	}
}

// reqFrameLen is want, a request frame with its body header if any, as
// it is for an empty body.
func reqFrameLen(want []byte, bodyLen int64) []byte {
	out := append([]byte(nil), want...)
	if bodyLen > 0 && bodyLen <= MaxChunk {
		out = out[:len(out)-HeaderLen]
	}
	binary.LittleEndian.PutUint64(out[HeaderLen+8:], 0)
	return out
}

// The deadline goes out as Unix nanoseconds, little-endian; none is 0.
func TestRequestDeadline(t *testing.T) {
	var r Request
	r.Add("A")
	at := time.Unix(0, 0x0102030405060708)
	got := r.Frame(5, at)
	want := reqFrame(5, 0x0102030405060708, [2]uint16{}, "A")
	if !bytes.Equal(got, want) {
		t.Errorf("Frame(5, %v)\n got  %q\n want %q", at, got, want)
	}
	if !bytes.Equal(got[HeaderLen:HeaderLen+8], []byte{8, 7, 6, 5, 4, 3, 2, 1}) {
		t.Errorf("deadline bytes %v", got[HeaderLen:HeaderLen+8])
	}
}

func TestRequestReuse(t *testing.T) {
	var r Request
	r.Add(strings.Repeat("x", 1000))
	first := r.Frame(0, time.Time{})
	r.Reset()
	r.Add("B")
	got := r.Frame(1, time.Time{})
	want := reqFrame(1, 0, [2]uint16{}, "B")
	if !bytes.Equal(got, want) {
		t.Fatalf("after Reset: got %q, want %q", got, want)
	}
	if &first[0] != &got[0] {
		t.Errorf("Reset did not reuse the buffer")
	}
}

// BodyWriter cuts a body into frames of at most MaxChunk bytes, and
// refuses more than it was told of.
func TestBodyWriter(t *testing.T) {
	var out bytes.Buffer
	bw := &BodyWriter{W: &out, Left: 5}
	bw.Write([]byte("ab"))
	bw.Write([]byte("cde"))
	if want := cat(hdr(TypeBody, 5), []byte("abcde")); !bytes.Equal(out.Bytes(), want) {
		t.Errorf("got %q, want %q", out.Bytes(), want)
	}
	if _, err := bw.Write([]byte("f")); err == nil {
		t.Errorf("a byte past the declared length was taken")
	}
}

// big is a head larger than the bufio buffers the tests use.
var big = strings.Repeat("v", 10000)

func TestReadHead(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    Head
		wantErr error  // errors.Is target
		errHas  string // substring of the error
	}{
		{name: "status and reason", in: head("200 OK"), want: Head{Status: 200, Reason: "OK", Fields: []string{}}},
		{name: "no reason", in: head("204"), want: Head{Status: 204, Fields: []string{}}},
		{name: "status only, trailing space", in: head("301 "), want: Head{Status: 301, Fields: []string{}}},
		{name: "lowest code", in: head("100 Continue"), want: Head{Status: 100, Reason: "Continue", Fields: []string{}}},
		{name: "highest code", in: head("599 Last"), want: Head{Status: 599, Reason: "Last", Fields: []string{}}},
		{name: "reason with spaces", in: head("404 Not Found"), want: Head{Status: 404, Reason: "Not Found", Fields: []string{}}},
		{
			name: "headers",
			in:   head("201 Created\x00Content-Type\x00text/plain; charset=utf-8\x00Set-Cookie\x00a=1\x00Set-Cookie\x00b=2"),
			want: Head{Status: 201, Reason: "Created", Fields: []string{
				"Content-Type", "text/plain; charset=utf-8", "Set-Cookie", "a=1", "Set-Cookie", "b=2"}},
		},
		{
			name: "every token character in a name",
			in:   head("200 OK\x00!#$%&'*+-.^_`|~09azAZ\x00v"),
			want: Head{Status: 200, Reason: "OK", Fields: []string{"!#$%&'*+-.^_`|~09azAZ", "v"}},
		},
		{
			name: "empty value, tab and obs-text in a value",
			in:   head("200 OK\x00X-Empty\x00\x00X-Tab\x00a\tb\x00X-Latin\x00caf\xe9 \xff"),
			want: Head{Status: 200, Reason: "OK", Fields: []string{"X-Empty", "", "X-Tab", "a\tb", "X-Latin", "caf\xe9 \xff"}},
		},
		{
			name: "head larger than the read buffer",
			in:   head("200 OK\x00X-Big\x00" + big),
			want: Head{Status: 200, Reason: "OK", Fields: []string{"X-Big", big}},
		},
		{
			name: "head of exactly MaxHead",
			in:   head("200 OK\x00X\x00" + strings.Repeat("v", MaxHead-len("3\x00200 OK\x00X\x00"))),
			want: Head{Status: 200, Reason: "OK", Fields: []string{"X", strings.Repeat("v", MaxHead-len("3\x00200 OK\x00X\x00"))}},
		},

		{name: "empty head", in: head(""), errHas: "bad status"},
		{name: "two digit status", in: head("20 OK"), errHas: "bad status"},
		{name: "four digit status", in: head("2000 OK"), errHas: "bad status"},
		{name: "no space after code", in: head("200OK"), errHas: "bad status"},
		{name: "letters", in: head("abc OK"), errHas: "bad status"},
		{name: "code below 100", in: head("099 Low"), errHas: "bad status"},
		{name: "code over 599", in: head("600 High"), errHas: "bad status"},
		{name: "code 999", in: head("999 Whatever"), errHas: "bad status"},
		{name: "signed code", in: head("+99 Plus"), errHas: "bad status"},
		{name: "negative code", in: head("-10 Minus"), errHas: "bad status"},
		{name: "space in code", in: head(" 20 OK"), errHas: "bad status"},
		{name: "status is a header name", in: head("Content-Type\x00text/html"), errHas: "bad status"},

		{name: "empty header name", in: head("200 OK\x00\x00v"), errHas: "bad header name"},
		{name: "space in header name", in: head("200 OK\x00Bad Name\x00v"), errHas: "bad header name"},
		{name: "colon in header name", in: head("200 OK\x00X:Y\x00v"), errHas: "bad header name"},
		{name: "CR in header name", in: head("200 OK\x00X\r\x00v"), errHas: "bad header name"},
		{name: "newline injected via name", in: head("200 OK\x00X\r\nSet-Cookie\x00v"), errHas: "bad header name"},
		{name: "non-ASCII header name", in: head("200 OK\x00Caf\xe9\x00v"), errHas: "bad header name"},
		{name: "bad name after good ones", in: head("200 OK\x00A\x00b\x00(c)\x00d"), errHas: "bad header name"},

		{name: "CR LF in value", in: head("200 OK\x00X\x00a\r\nSet-Cookie: evil=1"), errHas: "control character"},
		{name: "LF in value", in: head("200 OK\x00X\x00a\nb"), errHas: "control character"},
		{name: "CR in value", in: head("200 OK\x00X\x00a\rb"), errHas: "control character"},
		{name: "SOH in value", in: head("200 OK\x00X\x00\x01"), errHas: "control character"},
		{name: "DEL in value", in: head("200 OK\x00X\x00a\x7f"), errHas: "control character"},
		{name: "control character in a big value", in: head("200 OK\x00X\x00" + big + "\n"), errHas: "control character"},

		{name: "over MaxHead, no bytes follow", in: hdr(TypeHead, MaxHead+1), errHas: "over the"},
		{name: "over MaxHead, huge", in: cat(hdr(TypeHead, 0xFFFFFFF0), []byte("200 OK")), errHas: "over the"},
		{name: "no worker named", in: headRaw("200 OK"), errHas: "names no worker"},
		{name: "another version", in: cat([]byte{1, 3, 0, 0, 6, 0, 0, 0}, []byte("200 OK")), wantErr: ErrFrame, errHas: "version 1"},
		{name: "a body where the head is due", in: frame("200 OK"), wantErr: ErrBadHead, errHas: "type 2"},

		{name: "abort marker", in: abortF, wantErr: ErrAborted},
		{name: "expired marker", in: expiredF, wantErr: ErrExpired},
		{name: "abort marker followed by junk", in: cat(abortF, []byte("junk")), wantErr: ErrAborted},

		{name: "nothing at all", in: nil, wantErr: io.EOF},
		{name: "half a length", in: []byte{6, 0}, wantErr: io.ErrUnexpectedEOF},
		{name: "length without head", in: hdr(TypeHead, 6), wantErr: io.ErrUnexpectedEOF},
		{name: "short head", in: head("200 OK")[:7], wantErr: io.ErrUnexpectedEOF},
		{name: "short big head", in: head("200 OK\x00X\x00" + big)[:6000], wantErr: io.ErrUnexpectedEOF},
		{name: "short MaxHead head", in: hdr(TypeHead, MaxHead), wantErr: io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Once with a whole buffer at hand, once a byte at a time.
			for _, src := range []struct {
				name string
				r    io.Reader
			}{
				{"whole", bytes.NewReader(tt.in)},
				{"one byte reads", iotest.OneByteReader(bytes.NewReader(tt.in))},
			} {
				br := bufio.NewReaderSize(src.r, 4096)
				h := Head{Status: 1, Reason: "stale", Fields: []string{"Stale", "x"}}
				err := ReadHead(br, &h)
				switch {
				case tt.wantErr != nil:
					if !errors.Is(err, tt.wantErr) {
						t.Errorf("%s: got error %v, want %v", src.name, err, tt.wantErr)
					}
					// A clean EOF must stay io.EOF: edge retries on it.
					if tt.wantErr == io.ErrUnexpectedEOF && errors.Is(err, io.EOF) {
						t.Errorf("%s: got %v, which is io.EOF; a truncated head is not a clean EOF", src.name, err)
					}
				case tt.errHas != "":
					if err == nil || !strings.Contains(err.Error(), tt.errHas) {
						t.Errorf("%s: got error %v, want one saying %q", src.name, err, tt.errHas)
					}
					if !errors.Is(err, ErrBadHead) {
						t.Errorf("%s: got error %v, want one that is ErrBadHead", src.name, err)
					}
				default:
					if err != nil {
						t.Fatalf("%s: got error %v, want %+v", src.name, err, short(tt.want))
					}
					want := tt.want
					want.Worker = "3"
					if !reflect.DeepEqual(h, want) {
						t.Errorf("%s:\n got  %+v\n want %+v", src.name, short(h), short(want))
					}
				}
			}
		})
	}
}

// short keeps failure messages readable when a head holds a big value.
func short(h Head) Head {
	f := make([]string, len(h.Fields))
	for i, s := range h.Fields {
		if len(s) > 40 {
			s = s[:20] + "..." + s[len(s)-10:]
		}
		f[i] = s
	}
	h.Fields = f
	return h
}

// TestReadHeadDeclaredLength checks that a head that claims to be big but
// is not there costs no more memory than the bytes that did arrive.
func TestReadHeadDeclaredLength(t *testing.T) {
	for _, n := range []uint32{MaxHead, MaxHead / 2, 8 << 10} {
		in := cat(hdr(TypeHead, n), []byte("3\x00200 OK\x00X\x00"), bytes.Repeat([]byte("v"), 100))
		br := bufio.NewReaderSize(bytes.NewReader(in), 4096)
		var h Head
		alloc := allocated(func() {
			if err := ReadHead(br, &h); !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("declared %d: got %v, want io.ErrUnexpectedEOF", n, err)
			}
		})
		if alloc > 16<<10 {
			t.Errorf("declared %d, sent %d: ReadHead allocated %d bytes, want under 16 KiB", n, len(in), alloc)
		}
	}
}

// allocated is how many heap bytes f allocated.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestReadBody(t *testing.T) {
	chunk10k := strings.Repeat("0123456789", 1000)
	tests := []struct {
		name    string
		in      []byte
		size    int // bufio size; 4096 when 0
		want    string
		wantErr error
		errHas  string
	}{
		{name: "empty body", in: endF, want: ""},
		{name: "one chunk", in: cat(frame("hello"), endF), want: "hello"},
		{name: "several chunks", in: cat(frame("ab"), frame("cde"), frame("f"), endF), want: "abcdef"},
		{name: "chunk larger than the buffer", in: cat(frame("<"), frame(chunk10k), frame(">"), endF), want: "<" + chunk10k + ">"},
		{name: "chunks larger than a tiny buffer", size: 16, in: cat(frame(chunk10k[:100]), frame(chunk10k[:17]), frame(chunk10k[:16]), endF),
			want: chunk10k[:100] + chunk10k[:17] + chunk10k[:16]},
		{name: "chunk exactly the buffer size", in: cat(frame(chunk10k[:4096]), endF), want: chunk10k[:4096]},
		{name: "binary data", in: cat(frame("\x00\xff\x00\x00\x00\x00"), endF), want: "\x00\xff\x00\x00\x00\x00"},

		{name: "abort first", in: abortF, wantErr: ErrAborted},
		{name: "abort mid-body", in: cat(frame("partial"), frame(chunk10k), abortF), want: "partial" + chunk10k, wantErr: ErrAborted},

		{name: "chunk over MaxChunk", in: hdr(TypeBody, MaxChunk+1), errHas: "over the"},

		{name: "no end frame", in: frame("abc"), want: "abc", wantErr: io.ErrUnexpectedEOF},
		{name: "a head in the body", in: cat(frame("abc"), head("200 OK")), want: "abc", wantErr: ErrFrame},
		{name: "an end frame of another size", in: cat(hdr(TypeEnd, 3), []byte("abc")), wantErr: ErrFrame},
		{name: "nothing at all", in: nil, wantErr: io.ErrUnexpectedEOF},
		{name: "half a length", in: cat(frame("abc"), []byte{0, 0}), want: "abc", wantErr: io.ErrUnexpectedEOF},
		{name: "short chunk", in: cat(hdr(TypeBody, 10), []byte("abc")), want: "abc", wantErr: io.ErrUnexpectedEOF},
		{name: "short big chunk", in: frame(chunk10k)[:6008], want: chunk10k[:6000], wantErr: io.ErrUnexpectedEOF},
		{name: "huge declared chunk", in: cat(hdr(TypeBody, MaxChunk), []byte("abc")), want: "abc", wantErr: io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			size := tt.size
			if size == 0 {
				size = 4096
			}
			for _, src := range []struct {
				name string
				r    io.Reader
			}{
				{"whole", bytes.NewReader(tt.in)},
				{"one byte reads", iotest.OneByteReader(bytes.NewReader(tt.in))},
			} {
				br := bufio.NewReaderSize(src.r, size)
				var got []byte
				err := ReadBody(br, func(b []byte) error {
					if len(b) == 0 {
						t.Errorf("%s: sink got an empty chunk", src.name)
					}
					if len(b) > br.Size() {
						t.Errorf("%s: sink got %d bytes, more than the %d buffer", src.name, len(b), br.Size())
					}
					got = append(got, b...)
					return nil
				}, nil)
				switch {
				case tt.wantErr != nil:
					if !errors.Is(err, tt.wantErr) {
						t.Errorf("%s: got error %v, want %v", src.name, err, tt.wantErr)
					}
				case tt.errHas != "":
					if err == nil || !strings.Contains(err.Error(), tt.errHas) {
						t.Errorf("%s: got error %v, want one saying %q", src.name, err, tt.errHas)
					}
				default:
					if err != nil {
						t.Errorf("%s: got error %v, want nil", src.name, err)
					}
				}
				if string(got) != tt.want {
					t.Errorf("%s: body is %d bytes %.40q, want %d bytes %.40q", src.name, len(got), got, len(tt.want), tt.want)
				}
			}
		})
	}
}

func TestReadBodySinkError(t *testing.T) {
	stop := errors.New("client went away")
	in := cat(frame("one"), frame("two"), endF)
	br := bufio.NewReader(bytes.NewReader(in))
	calls := 0
	err := ReadBody(br, func(b []byte) error {
		calls++
		return stop
	}, nil)
	if !errors.Is(err, stop) {
		t.Errorf("got error %v, want the sink's %v", err, stop)
	}
	if calls != 1 {
		t.Errorf("sink called %d times, want 1", calls)
	}
}

// TestBackToBack reads two responses from one connection, as edge does
// with a kept-alive worker connection: neither read may take bytes of the
// next response.
func TestBackToBack(t *testing.T) {
	in := cat(
		head("200 OK\x00A\x001"), frame("first"), frame(big), endF,
		head("404 Not Found"), endF,
		head("500 Boom\x00B\x002"), frame("x"), abortF,
		head("201 Created"), frame("last"), endF,
	)
	type resp struct {
		status int
		fields []string
		body   string
		err    error
	}
	want := []resp{
		{200, []string{"A", "1"}, "first" + big, nil},
		{404, []string{}, "", nil},
		{500, []string{"B", "2"}, "x", ErrAborted},
		{201, []string{}, "last", nil},
	}
	br := bufio.NewReaderSize(bytes.NewReader(in), 4096)
	var h Head
	for i, w := range want {
		if err := ReadHead(br, &h); err != nil {
			t.Fatalf("response %d: ReadHead: %v", i, err)
		}
		var body []byte
		err := ReadBody(br, func(b []byte) error { body = append(body, b...); return nil }, nil)
		if h.Status != w.status || !reflect.DeepEqual(h.Fields, w.fields) || string(body) != w.body || !errors.Is(err, w.err) {
			t.Errorf("response %d: got %d %q body %d bytes err %v, want %d %q body %d bytes err %v",
				i, h.Status, h.Fields, len(body), err, w.status, w.fields, len(w.body), w.err)
		}
	}
	if err := ReadHead(br, &h); err != io.EOF {
		t.Errorf("after the last response: got %v, want io.EOF", err)
	}
}

// The end frame may carry what the worker measured; a short one is an
// error like any cut answer.
func TestReadBodyStats(t *testing.T) {
	want := Stats{Taken: 1764662400123456789, Wall: 1500 * time.Microsecond, CPU: -1, PID: 4242, RSS: 51200}
	in := cat(frame("hi"), AppendStats(nil, want), head("204 No Content"))
	br := bufio.NewReader(iotest.OneByteReader(bytes.NewReader(in)))
	var got Stats
	var body []byte
	if err := ReadBody(br, func(b []byte) error { body = append(body, b...); return nil }, &got); err != nil {
		t.Fatal(err)
	}
	if got != want || string(body) != "hi" {
		t.Errorf("got %+v %q, want %+v \"hi\"", got, body, want)
	}
	var h Head
	if err := ReadHead(br, &h); err != nil || h.Status != 204 {
		t.Errorf("the next frame after the stats: %v %d; the end frame took too much or too little", err, h.Status)
	}
	short := AppendStats(nil, want)[:20]
	if err := ReadBody(bufio.NewReader(bytes.NewReader(short)), func([]byte) error { return nil }, &got); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("a cut stats frame: %v, want io.ErrUnexpectedEOF", err)
	}
}

// The head frame's flags carry the app's JSON time; the end frame's, the
// app key report.
func TestHeadJSONAndEndKey(t *testing.T) {
	h := []byte("3\x00200 OK")
	b := AppendHeader(nil, TypeHead, 25, len(h))
	b = append(b, h...)
	b = AppendStats(b, Stats{Taken: 1, Key: KeyPresent | KeyWeak | KeyReport(KeyLiteral)<<keySourceShift | 0x2a})
	r := bufio.NewReader(bytes.NewReader(b))
	var head Head
	if err := ReadHead(r, &head); err != nil {
		t.Fatal(err)
	}
	if head.JSON != 2500*time.Microsecond || head.Worker != "3" {
		t.Errorf("head: JSON %v, worker %q; want 2.5ms from worker 3", head.JSON, head.Worker)
	}
	var st Stats
	if err := ReadBody(r, func([]byte) error { return nil }, &st); err != nil {
		t.Fatal(err)
	}
	if st.Key.Source() != KeyLiteral || st.Key.Print() != 0x2a || st.Key&KeyWeak == 0 || st.Key&KeyDjangoUnsafe != 0 {
		t.Errorf("end: key %#x: source %v, print %#x", uint16(st.Key), st.Key.Source(), st.Key.Print())
	}
}
