package edge

import (
	"reflect"
	"strings"
	"testing"
)

// scanAll feeds in to a scanner whole, then a byte at a time, and returns
// the verdicts of each way; they must agree.
func scanAll(t *testing.T, max int, in string) []verdict {
	t.Helper()
	whole := headScanner{max: max}
	whole.feed([]byte(in))
	bytewise := headScanner{max: max}
	for i := 0; i < len(in); i++ {
		bytewise.feed([]byte{in[i]})
	}
	if !reflect.DeepEqual(whole.verdicts, bytewise.verdicts) {
		t.Fatalf("whole %v, byte by byte %v: the same bytes judged differently", whole.verdicts, bytewise.verdicts)
	}
	return whole.verdicts
}

func TestHeadScanner(t *testing.T) {
	get := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	ok := verdict{}
	bad := func(reason string) verdict { return verdict{400, limitProtocol, reason} }
	big := func(n int) string { // a head of exactly n bytes
		pre := "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: "
		return pre + strings.Repeat("a", n-len(pre)-4) + "\r\n\r\n"
	}
	tests := []struct {
		name string
		max  int
		in   string
		want []verdict
	}{
		{"one GET", 8192, get, []verdict{ok}},
		{"pipelined GETs", 8192, get + get + get, []verdict{ok, ok, ok}},
		{"bare LF line ends", 8192, "GET / HTTP/1.1\nHost: x\n\n" + get, []verdict{ok, ok}},
		{"empty lines before a request", 8192, "\r\n\r\n" + get, []verdict{ok}},
		{"a body, then the next request", 8192,
			"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 25\r\n\r\nGET /not-a-request HTTP/1." + get, []verdict{ok, ok}},
		{"a chunked body, then the next request", 8192,
			"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nGET /\r\n1b\r\nGET / HTTP/1.1\r\nHost: y\r\n\r\n\r\n0\r\nTrailer: v\r\n\r\n" + get,
			[]verdict{ok, ok}},
		{"Content-Length and Transfer-Encoding", 8192,
			"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + get,
			[]verdict{bad("request with both Content-Length and Transfer-Encoding")}},
		{"the same, other spelling and order", 8192,
			"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\nHost: x\r\n\r\n",
			[]verdict{bad("request with both Content-Length and Transfer-Encoding")}},
		{"obs-fold", 8192, "GET / HTTP/1.1\r\nHost: x\r\nX-A: one\r\n two\r\n\r\n",
			[]verdict{bad("obsolete line folding in a request header")}},
		{"obs-fold with a tab", 8192, "GET / HTTP/1.1\r\nHost: x\r\nX-A: one\r\n\ttwo\r\n\r\n",
			[]verdict{bad("obsolete line folding in a request header")}},
		{"Transfer-Encoding on HTTP/1.0", 8192, "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			[]verdict{bad("Transfer-Encoding on an HTTP/1.0 request")}},
		{"a head of exactly max_header", 1024, big(1024) + get, []verdict{ok, ok}},
		{"a head one byte over", 1024, big(1025) + get,
			[]verdict{{431, limitMaxHeader, "request head over limits.max_header"}}},
		{"a head with no end, over", 64, "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", 100),
			[]verdict{{431, limitMaxHeader, "request head over limits.max_header"}}},
		{"an unknown coding: left to net/http", 8192,
			"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nxyz" + get, []verdict{ok}},
		{"a bad Content-Length: left to net/http", 8192,
			"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n" + get, []verdict{ok}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := scanAll(t, tt.max, tt.in); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("verdicts %v, want %v", got, tt.want)
			}
		})
	}
}

// FuzzHeadScanner feeds the scanner arbitrary bytes in two reads split
// anywhere. It must not panic, must judge the same bytes the same however
// they are split, and must never hold more than max+1 bytes of a head.
func FuzzHeadScanner(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n",
		"\n\n\n",
		"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
	} {
		f.Add([]byte(seed), uint16(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, at uint16) {
		const max = 256
		split := int(at) % (len(in) + 1)
		a := headScanner{max: max}
		a.feed(in[:split])
		if len(a.head) > max+1 {
			t.Fatalf("holds %d bytes of a head, max is %d", len(a.head), max)
		}
		a.feed(in[split:])
		b := headScanner{max: max}
		b.feed(in)
		if !reflect.DeepEqual(a.verdicts, b.verdicts) || a.state != b.state {
			t.Fatalf("split at %d: verdicts %v state %v; whole: %v state %v", split, a.verdicts, a.state, b.verdicts, b.state)
		}
	})
}
