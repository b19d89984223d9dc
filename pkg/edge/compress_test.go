package edge

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/edged/edged/pkg/config"
	"github.com/klauspost/compress/zstd"
)

func TestChooseEncoding(t *testing.T) {
	tests := []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{""}, ""},
		{[]string{"gzip"}, "gzip"},
		{[]string{"gzip, deflate, br"}, "gzip"},
		{[]string{"zstd"}, "zstd"},
		{[]string{"gzip, zstd"}, "zstd"},
		{[]string{"gzip;q=1.0, zstd;q=0.5"}, "gzip"},
		{[]string{"gzip;q=0, zstd;q=0"}, ""},
		{[]string{"gzip;q=0"}, ""},
		{[]string{"*"}, "zstd"},
		{[]string{"*;q=0.5, zstd;q=0"}, "gzip"},
		{[]string{"identity"}, ""},
		{[]string{"GZIP ; Q=0.8"}, "gzip"},
		{[]string{"x-gzip"}, "gzip"},
		{[]string{"gzip;q=abc"}, ""},
		{[]string{"gzip;q=2"}, ""},
		{[]string{"deflate", "gzip;q=0.1"}, "gzip"},
	}
	for _, tt := range tests {
		if got := chooseEncoding(tt.in); got != tt.want {
			t.Errorf("chooseEncoding(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzChooseEncoding: any Accept-Encoding gives gzip, zstd or nothing,
// without a panic.
func FuzzChooseEncoding(f *testing.F) {
	for _, s := range []string{"gzip", "gzip;q=0.5, zstd", "*;q=0", ",,;;==", "zstd;q=1;q=0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		switch got := chooseEncoding([]string{s}); got {
		case "", "gzip", "zstd":
		default:
			t.Fatalf("chooseEncoding(%q) = %q", s, got)
		}
	})
}

func TestCompress(t *testing.T) {
	json := []byte(`{"items":[` + strings.Repeat(`{"name":"widget","price":12.5},`, 300) + `{}]}`)
	tests := []struct {
		name     string
		fields   []string
		body     []byte
		method   string
		accept   string
		config   []string
		wantEnc  string
		wantVary bool
	}{
		{"gzip", []string{"Content-Type", "application/json", "Etag", `"v1"`}, json, "GET", "gzip", nil, "gzip", true},
		{"zstd preferred", []string{"Content-Type", "application/json"}, json, "GET", "gzip, zstd", nil, "zstd", true},
		{"text/* matches", []string{"Content-Type", "text/html; charset=utf-8"}, json, "GET", "gzip", nil, "gzip", true},
		{"client takes none", []string{"Content-Type", "application/json"}, json, "GET", "", nil, "", true},
		{"type not listed", []string{"Content-Type", "image/png"}, json, "GET", "gzip", nil, "", false},
		{"under min_size", []string{"Content-Type", "application/json"}, []byte(`{"a":1}`), "GET", "gzip", nil, "", false},
		{"already encoded", []string{"Content-Type", "application/json", "Content-Encoding", "br"}, json, "GET", "gzip", nil, "", false},
		{"no-transform", []string{"Content-Type", "application/json", "Cache-Control", "public, no-transform"}, json, "GET", "gzip", nil, "", false},
		{"a range", []string{"Content-Type", "application/json", "Content-Range", "bytes 0-9/100"}, json, "GET", "gzip", nil, "", false},
		{"off", []string{"Content-Type", "application/json"}, json, "GET", "gzip", []string{"compress.enabled", "false"}, "", false},
		{"HEAD", []string{"Content-Type", "application/json"}, json, "HEAD", "gzip", nil, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := socketDir(t)
			startWorker(t, dir, "1", answer("200 OK", tt.fields, tt.body))
			s := newServer(t, dir, append([]string{"compress.enabled", "true"}, tt.config...)...)
			r := environRequest(tt.method, "/", nil)
			if tt.accept != "" {
				r.Header.Set("Accept-Encoding", tt.accept)
			}
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, r)
			if rec.Code != 200 {
				t.Fatalf("status %d", rec.Code)
			}
			h := rec.Header()
			if got := h.Get("Content-Encoding"); got != tt.wantEnc && !(tt.name == "already encoded" && got == "br") {
				t.Errorf("Content-Encoding %q, want %q", got, tt.wantEnc)
			}
			if got := strings.Contains(strings.Join(h["Vary"], ","), "Accept-Encoding"); got != tt.wantVary {
				t.Errorf("Vary: Accept-Encoding %v, want %v (%q)", got, tt.wantVary, h["Vary"])
			}
			if tt.method == "HEAD" {
				return
			}
			body := rec.Body.Bytes()
			if cl := h.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(body)) {
				t.Errorf("Content-Length %s, body %d bytes", cl, len(body))
			}
			var plain []byte
			switch tt.wantEnc {
			case "gzip":
				zr, err := gzip.NewReader(bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				plain, _ = io.ReadAll(zr)
			case "zstd":
				zr, err := zstd.NewReader(bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				plain, _ = io.ReadAll(zr)
				zr.Close()
			default:
				plain = body
			}
			if !bytes.Equal(plain, tt.body) {
				t.Errorf("body after decoding: %d bytes, want the app's %d", len(plain), len(tt.body))
			}
			if tt.wantEnc != "" && len(body) >= len(tt.body) {
				t.Errorf("compressed %d bytes into %d", len(tt.body), len(body))
			}
			if tag := h.Get("Etag"); tt.wantEnc != "" && tag != "" && !strings.HasPrefix(tag, "W/") {
				t.Errorf("ETag %q of a compressed answer, want it weak", tag)
			}
		})
	}
}

// BenchmarkCompress is the edge's cost of compressing a 100 KiB JSON
// answer at the default levels (go test -bench Compress ./pkg/edge).
func BenchmarkCompress(b *testing.B) {
	body := []byte(`{"items":[` + strings.Repeat(`{"id":12345,"name":"widget","tags":["a","b"],"price":12.5},`, 1750) + `{}]}`)[:100<<10]
	for _, enc := range []string{"gzip", "zstd"} {
		b.Run(enc, func(b *testing.B) {
			c, err := newCompressor(config.Compress{Enabled: true, GzipLevel: 1, ZstdLevel: 3})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				c.compress(enc, body)
			}
		})
	}
}
