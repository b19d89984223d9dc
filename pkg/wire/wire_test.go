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

// u32 is n as the 4 little-endian bytes that prefix every response frame.
func u32(n uint32) []byte {
	return binary.LittleEndian.AppendUint32(nil, n)
}

// frame is one response frame: the length of s, then s.
func frame(s string) []byte {
	return append(u32(uint32(len(s))), s...)
}

// head is worker 3's head frame for s, a status and headers.
func head(s string) []byte {
	return frame("3\x00" + s)
}

// reqFrame is the request frame for env and a body of bodyLen bytes.
func reqFrame(env string, bodyLen uint64) []byte {
	return append(reqPrefix(uint32(len(env)), bodyLen), env...)
}

// cat joins byte slices.
func cat(parts ...[]byte) []byte {
	return bytes.Join(parts, nil)
}

// reqPrefix is the request prefix for an env of envLen bytes, with no
// deadline.
func reqPrefix(envLen uint32, bodyLen uint64) []byte {
	b := binary.LittleEndian.AppendUint32(nil, envLen)
	b = binary.LittleEndian.AppendUint64(b, bodyLen)
	return binary.LittleEndian.AppendUint64(b, 0)
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
			want:  reqPrefix(0, 0),
		},
		{
			name:    "one entry",
			build:   func(r *Request) { r.Add("REQUEST_METHOD", "GET") },
			bodyLen: 0,
			want:    reqFrame("REQUEST_METHOD\x00GET", 0),
		},
		{
			name: "entries are NUL separated, empty values kept",
			build: func(r *Request) {
				r.Add("REQUEST_METHOD", "POST")
				r.Add("QUERY_STRING", "")
				r.Add("PATH_INFO", "/caf\xe9")
			},
			bodyLen: 10,
			want:    reqFrame("REQUEST_METHOD\x00POST\x00QUERY_STRING\x00\x00PATH_INFO\x00/caf\xe9", 10),
		},
		{
			name:    "large body length uses all 8 bytes",
			build:   func(r *Request) { r.Add("A", "b") },
			bodyLen: 1<<40 + 0x0102,
			want:    cat(u32(3), []byte{0x02, 0x01, 0, 0, 0, 1, 0, 0}, make([]byte, 8), []byte("A\x00b")),
		},
		{
			name:  "AddHeader upper-cases and maps - to _",
			build: func(r *Request) { r.AddHeader("Content-Type", []string{"text/plain"}, ", ") },
			want:  reqFrame("HTTP_CONTENT_TYPE\x00text/plain", 0),
		},
		{
			name:  "AddHeader joins values with sep",
			build: func(r *Request) { r.AddHeader("x-forwarded-for", []string{"10.0.0.1", "10.0.0.2"}, ", ") },
			want:  reqFrame("HTTP_X_FORWARDED_FOR\x0010.0.0.1, 10.0.0.2", 0),
		},
		{
			name:  "AddHeader cookie separator, digits and underscores kept",
			build: func(r *Request) { r.AddHeader("cookie", []string{"a=1", "b=2"}, "; ") },
			want:  reqFrame("HTTP_COOKIE\x00a=1; b=2", 0),
		},
		{
			name:  "AddHeader with no values",
			build: func(r *Request) { r.AddHeader("X-Empty-2", nil, ", ") },
			want:  reqFrame("HTTP_X_EMPTY_2\x00", 0),
		},
		{
			name: "Add and AddHeader mixed",
			build: func(r *Request) {
				r.Add("REQUEST_METHOD", "GET")
				r.AddHeader("Host", []string{"example.com"}, ", ")
				r.Add("SERVER_PORT", "80")
			},
			want: reqFrame("REQUEST_METHOD\x00GET\x00HTTP_HOST\x00example.com\x00SERVER_PORT\x0080", 0),
		},
		{
			name: "Reset forgets earlier entries",
			build: func(r *Request) {
				r.Add("OLD", "x")
				r.Frame(99, time.Time{})
				r.Reset()
				r.Add("NEW", "y")
			},
			want: reqFrame("NEW\x00y", 0),
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
			// Frame only fills in the prefix: calling it again is harmless.
			if again := r.Frame(tt.bodyLen, time.Time{}); !bytes.Equal(again, tt.want) {
				t.Errorf("second Frame(%d)\n got  %q\n want %q", tt.bodyLen, again, tt.want)
			}
		})
	}
}

// The deadline goes out as Unix nanoseconds, little-endian; none is 0.
func TestRequestDeadline(t *testing.T) {
	var r Request
	r.Add("A", "b")
	at := time.Unix(0, 0x0102030405060708)
	got := r.Frame(5, at)
	want := cat(u32(3), []byte{5, 0, 0, 0, 0, 0, 0, 0}, []byte{8, 7, 6, 5, 4, 3, 2, 1}, []byte("A\x00b"))
	if !bytes.Equal(got, want) {
		t.Errorf("Frame(5, %v)\n got  %q\n want %q", at, got, want)
	}
}

func TestRequestReuse(t *testing.T) {
	var r Request
	r.Add("A", strings.Repeat("x", 1000))
	first := r.Frame(0, time.Time{})
	r.Reset()
	r.Add("B", "c")
	got := r.Frame(1, time.Time{})
	want := reqFrame("B\x00c", 1)
	if !bytes.Equal(got, want) {
		t.Fatalf("after Reset: got %q, want %q", got, want)
	}
	if &first[0] != &got[0] {
		t.Errorf("Reset did not reuse the buffer")
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

		{name: "over MaxHead, no bytes follow", in: u32(MaxHead + 1), errHas: "over the"},
		{name: "over MaxHead, huge", in: cat(u32(expired-1), []byte("200 OK")), errHas: "over the"},
		{name: "no worker named", in: frame("200 OK"), errHas: "names no worker"},

		{name: "abort marker", in: u32(abort), wantErr: ErrAborted},
		{name: "expired marker", in: u32(expired), wantErr: ErrExpired},
		{name: "abort marker followed by junk", in: cat(u32(abort), []byte("junk")), wantErr: ErrAborted},

		{name: "nothing at all", in: nil, wantErr: io.EOF},
		{name: "half a length", in: []byte{6, 0}, wantErr: io.ErrUnexpectedEOF},
		{name: "length without head", in: u32(6), wantErr: io.ErrUnexpectedEOF},
		{name: "short head", in: head("200 OK")[:7], wantErr: io.ErrUnexpectedEOF},
		{name: "short big head", in: head("200 OK\x00X\x00" + big)[:6000], wantErr: io.ErrUnexpectedEOF},
		{name: "short MaxHead head", in: u32(MaxHead), wantErr: io.ErrUnexpectedEOF},
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
		in := cat(u32(n), []byte("3\x00200 OK\x00X\x00"), bytes.Repeat([]byte("v"), 100))
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
		{name: "empty body", in: u32(0), want: ""},
		{name: "one chunk", in: cat(frame("hello"), u32(0)), want: "hello"},
		{name: "several chunks", in: cat(frame("ab"), frame("cde"), frame("f"), u32(0)), want: "abcdef"},
		{name: "chunk larger than the buffer", in: cat(frame("<"), frame(chunk10k), frame(">"), u32(0)), want: "<" + chunk10k + ">"},
		{name: "chunks larger than a tiny buffer", size: 16, in: cat(frame(chunk10k[:100]), frame(chunk10k[:17]), frame(chunk10k[:16]), u32(0)),
			want: chunk10k[:100] + chunk10k[:17] + chunk10k[:16]},
		{name: "chunk exactly the buffer size", in: cat(frame(chunk10k[:4096]), u32(0)), want: chunk10k[:4096]},
		{name: "binary data", in: cat(frame("\x00\xff\x00\x00\x00\x00"), u32(0)), want: "\x00\xff\x00\x00\x00\x00"},

		{name: "abort first", in: u32(abort), wantErr: ErrAborted},
		{name: "abort mid-body", in: cat(frame("partial"), frame(chunk10k), u32(abort)), want: "partial" + chunk10k, wantErr: ErrAborted},

		{name: "chunk over MaxChunk", in: u32(MaxChunk + 1), errHas: "over the"},

		{name: "no end frame", in: frame("abc"), want: "abc", wantErr: io.ErrUnexpectedEOF},
		{name: "nothing at all", in: nil, wantErr: io.ErrUnexpectedEOF},
		{name: "half a length", in: cat(frame("abc"), []byte{0, 0}), want: "abc", wantErr: io.ErrUnexpectedEOF},
		{name: "short chunk", in: cat(u32(10), []byte("abc")), want: "abc", wantErr: io.ErrUnexpectedEOF},
		{name: "short big chunk", in: frame(chunk10k)[:6004], want: chunk10k[:6000], wantErr: io.ErrUnexpectedEOF},
		{name: "huge declared chunk", in: cat(u32(MaxChunk), []byte("abc")), want: "abc", wantErr: io.ErrUnexpectedEOF},
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
	in := cat(frame("one"), frame("two"), u32(0))
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
		head("200 OK\x00A\x001"), frame("first"), frame(big), u32(0),
		head("404 Not Found"), u32(0),
		head("500 Boom\x00B\x002"), frame("x"), u32(abort),
		head("201 Created"), frame("last"), u32(0),
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
