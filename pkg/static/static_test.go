package static

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Markers stored outside the served root; no response may ever contain them.
const (
	secretTop     = "SECRET-TOP-7f3a"
	secretOutside = "SECRET-OUTSIDE-91bc"
	secretGz      = "SECRET-GZ-55d0"
)

var secrets = []string{secretTop, secretOutside, secretGz}

const helloBody = "0123456789abcdefghijklmnopqrstuvwxyz\n"

var fixedTime = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

// buildTree lays out:
//
//	base/secret                   outside the root
//	base/outside/secret.txt(.gz)  outside the root
//	base/root/...                 served
//
// and returns base and the root path.
func buildTree(t testing.TB) (base, root string) {
	t.Helper()
	base = t.TempDir()
	root = filepath.Join(base, "root")
	files := map[string]string{
		"secret":                 secretTop,
		"outside/secret.txt":     secretOutside,
		"outside/secret.txt.gz":  secretGz,
		"root/hello.txt":         helloBody,
		"root/page.html":         "<p>hi</p>",
		"root/data.json":         `{"a":1}`,
		"root/image.png":         "\x89PNG fake",
		"root/blob.zzunknown":    "<html>not sniffed</html>",
		"root/noext":             "<html>not sniffed</html>",
		"root/app.js":            "console.log('plain');",
		"root/app.js.br":         "BR-BYTES",
		"root/app.js.gz":         "GZ-BYTES-LONGER",
		"root/style.css":         "body{}",
		"root/style.css.gz":      "GZ-CSS",
		"root/sub/index.html":    "<h1>sub index</h1>",
		"root/sub/index.html.gz": "GZ-INDEX",
		"root/sub/other.txt":     "other",
		"root/noindex/file.txt":  "file in dir without index",
		"root/index.html":        "<h1>top index</h1>",
		"root/dirgz/x.txt":       "x",
		"root/odd.txt.br/x":      "a directory named like a sibling",
		"root/odd.txt":           "odd",
	}
	for name, body := range files {
		p := filepath.Join(base, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, fixedTime, fixedTime); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"root/link-in":      "hello.txt",
		"root/linkdir-in":   "sub",
		"root/link-out":     filepath.Join(base, "outside", "secret.txt"),
		"root/link-out-rel": "../secret",
		"root/linkdir-out":  filepath.Join(base, "outside"),
		"root/sub/link-up":  "../../outside/secret.txt",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(base, filepath.FromSlash(name))); err != nil {
			t.Fatal(err)
		}
	}
	mkfifo(t, filepath.Join(root, "fifo"))
	return base, root
}

func newHandler(t testing.TB, o Options) *Handler {
	t.Helper()
	h, err := New(o)
	if err != nil {
		t.Fatalf("New(%+v): %v", o, err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func wantETag(t testing.TB, path, suffix string) string {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`"%x-%x%s"`, uint64(fi.ModTime().UnixNano()), fi.Size(), suffix)
}

// serve runs one in-process request. target may be percent-encoded; it is
// parsed as a request line would be, without cleaning.
func serve(h http.Handler, method, target string, hdr map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// rawGet sends target verbatim as the request line over a real connection,
// so no client library cleans or re-encodes it.
func rawGet(t *testing.T, addr, target string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: test\r\nAccept-Encoding: br, gzip\r\nConnection: close\r\n\r\n", target); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response for %q: %v", target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestNew(t *testing.T) {
	_, root := buildTree(t)
	tests := []struct {
		name    string
		opts    Options
		wantErr string // substring; "" means success
	}{
		{"ok", Options{Prefix: "/static/", Root: root}, ""},
		{"slash prefix", Options{Prefix: "/", Root: root}, ""},
		{"missing dir", Options{Prefix: "/s/", Root: filepath.Join(root, "nope")}, filepath.Join(root, "nope")},
		{"regular file", Options{Prefix: "/s/", Root: filepath.Join(root, "hello.txt")}, filepath.Join(root, "hello.txt")},
		{"empty root", Options{Prefix: "/s/", Root: ""}, "empty root"},
		{"prefix without trailing slash", Options{Prefix: "/s", Root: root}, "prefix"},
		{"prefix without leading slash", Options{Prefix: "s/", Root: root}, "prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := New(tt.opts)
			if h != nil {
				defer h.Close()
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: got error %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("New: got nil error, want one containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("New: got error %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestServeFile(t *testing.T) {
	_, root := buildTree(t)
	h := newHandler(t, Options{Prefix: "/static/", Root: root, MaxAge: time.Hour, Index: "index.html"})
	lastMod := fixedTime.Format(http.TimeFormat)

	tests := []struct {
		name      string
		method    string
		target    string
		wantType  string
		wantBody  string
		wantETag  string
		wantNoLen bool
	}{
		{"text", "GET", "/static/hello.txt", "text/plain; charset=utf-8", helloBody, wantETag(t, filepath.Join(root, "hello.txt"), ""), false},
		{"head has no body", "HEAD", "/static/hello.txt", "text/plain; charset=utf-8", "", wantETag(t, filepath.Join(root, "hello.txt"), ""), false},
		{"html", "GET", "/static/page.html", "text/html; charset=utf-8", "<p>hi</p>", wantETag(t, filepath.Join(root, "page.html"), ""), false},
		{"json", "GET", "/static/data.json", "application/json; charset=utf-8", `{"a":1}`, wantETag(t, filepath.Join(root, "data.json"), ""), false},
		{"png", "GET", "/static/image.png", "image/png", "\x89PNG fake", wantETag(t, filepath.Join(root, "image.png"), ""), false},
		{"unknown extension not sniffed", "GET", "/static/blob.zzunknown", "application/octet-stream", "<html>not sniffed</html>", wantETag(t, filepath.Join(root, "blob.zzunknown"), ""), false},
		{"no extension not sniffed", "GET", "/static/noext", "application/octet-stream", "<html>not sniffed</html>", wantETag(t, filepath.Join(root, "noext"), ""), false},
		{"symlink inside root", "GET", "/static/link-in", "application/octet-stream", helloBody, wantETag(t, filepath.Join(root, "hello.txt"), ""), false},
		{"symlinked dir inside root", "GET", "/static/linkdir-in/other.txt", "text/plain; charset=utf-8", "other", wantETag(t, filepath.Join(root, "sub", "other.txt"), ""), false},
		{"double slash merged", "GET", "/static//hello.txt", "text/plain; charset=utf-8", helloBody, wantETag(t, filepath.Join(root, "hello.txt"), ""), false},
		{"dot segment", "GET", "/static/./sub/./other.txt", "text/plain; charset=utf-8", "other", wantETag(t, filepath.Join(root, "sub", "other.txt"), ""), false},
		{"encoded name", "GET", "/static/hell%6F.txt", "text/plain; charset=utf-8", helloBody, wantETag(t, filepath.Join(root, "hello.txt"), ""), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := serve(h, tt.method, tt.target, nil)
			if got, want := w.Code, http.StatusOK; got != want {
				t.Fatalf("status: got %d, want %d", got, want)
			}
			if got := w.Header().Get("Content-Type"); got != tt.wantType {
				t.Errorf("Content-Type: got %q, want %q", got, tt.wantType)
			}
			if got := w.Header().Get("ETag"); got != tt.wantETag {
				t.Errorf("ETag: got %q, want %q", got, tt.wantETag)
			}
			if got := w.Header().Get("Last-Modified"); got != lastMod {
				t.Errorf("Last-Modified: got %q, want %q", got, lastMod)
			}
			if got, want := w.Header().Get("Cache-Control"), "public, max-age=3600"; got != want {
				t.Errorf("Cache-Control: got %q, want %q", got, want)
			}
			if got := w.Header().Get("Content-Encoding"); got != "" {
				t.Errorf("Content-Encoding: got %q, want none", got)
			}
			fullLen := len(tt.wantBody)
			if tt.method == "HEAD" {
				fullLen = len(helloBody)
			}
			if got, want := w.Header().Get("Content-Length"), strconv.Itoa(fullLen); got != want {
				t.Errorf("Content-Length: got %q, want %q", got, want)
			}
			if got := w.Body.String(); got != tt.wantBody {
				t.Errorf("body: got %q, want %q", got, tt.wantBody)
			}
		})
	}
}

func TestNoCacheControlWithoutMaxAge(t *testing.T) {
	_, root := buildTree(t)
	h := newHandler(t, Options{Prefix: "/", Root: root})
	w := serve(h, "GET", "/hello.txt", nil)
	if got, want := w.Code, http.StatusOK; got != want {
		t.Fatalf("status: got %d, want %d", got, want)
	}
	if got := w.Header().Get("Cache-Control"); got != "" {
		t.Errorf("Cache-Control: got %q, want none", got)
	}
	if got := w.Body.String(); got != helloBody {
		t.Errorf("body: got %q, want %q", got, helloBody)
	}
}

func TestConditional(t *testing.T) {
	_, root := buildTree(t)
	h := newHandler(t, Options{Prefix: "/static/", Root: root, MaxAge: time.Minute})
	tag := wantETag(t, filepath.Join(root, "hello.txt"), "")
	gzTag := wantETag(t, filepath.Join(root, "app.js.gz"), "-gz")

	tests := []struct {
		name     string
		target   string
		hdr      map[string]string
		wantCode int
	}{
		{"if-none-match etag", "/static/hello.txt", map[string]string{"If-None-Match": tag}, http.StatusNotModified},
		{"if-none-match list", "/static/hello.txt", map[string]string{"If-None-Match": `"nope", ` + tag}, http.StatusNotModified},
		{"if-none-match star", "/static/hello.txt", map[string]string{"If-None-Match": "*"}, http.StatusNotModified},
		{"if-none-match other", "/static/hello.txt", map[string]string{"If-None-Match": `"nope"`}, http.StatusOK},
		{"if-modified-since same", "/static/hello.txt", map[string]string{"If-Modified-Since": fixedTime.Format(http.TimeFormat)}, http.StatusNotModified},
		{"if-modified-since later", "/static/hello.txt", map[string]string{"If-Modified-Since": fixedTime.Add(time.Hour).Format(http.TimeFormat)}, http.StatusNotModified},
		{"if-modified-since earlier", "/static/hello.txt", map[string]string{"If-Modified-Since": fixedTime.Add(-time.Hour).Format(http.TimeFormat)}, http.StatusOK},
		{"if-match mismatch", "/static/hello.txt", map[string]string{"If-Match": `"nope"`}, http.StatusPreconditionFailed},
		{"gzip variant etag", "/static/app.js", map[string]string{"Accept-Encoding": "gzip", "If-None-Match": gzTag}, http.StatusNotModified},
		{"gzip etag does not match identity", "/static/app.js", map[string]string{"If-None-Match": gzTag}, http.StatusOK},
		{"gzip variant if-match mismatch", "/static/app.js", map[string]string{"Accept-Encoding": "gzip", "If-Match": `"nope"`}, http.StatusPreconditionFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := serve(h, "GET", tt.target, tt.hdr)
			if got := w.Code; got != tt.wantCode {
				t.Fatalf("status: got %d, want %d", got, tt.wantCode)
			}
			if tt.wantCode == http.StatusOK {
				return
			}
			if got := w.Body.Len(); got != 0 {
				t.Errorf("body length: got %d, want 0", got)
			}
			if got := w.Header().Get("Content-Encoding"); got != "" {
				t.Errorf("Content-Encoding: got %q, want none", got)
			}
			if tt.wantCode == http.StatusNotModified {
				if got, want := w.Header().Get("Cache-Control"), "public, max-age=60"; got != want {
					t.Errorf("Cache-Control: got %q, want %q", got, want)
				}
			}
		})
	}
}

func TestRange(t *testing.T) {
	_, root := buildTree(t)
	h := newHandler(t, Options{Prefix: "/static/", Root: root})
	tag := wantETag(t, filepath.Join(root, "hello.txt"), "")
	size := len(helloBody)

	tests := []struct {
		name      string
		hdr       map[string]string
		wantCode  int
		wantRange string
		wantBody  string
		wantEnc   string
	}{
		{"first ten", map[string]string{"Range": "bytes=0-9"}, http.StatusPartialContent, fmt.Sprintf("bytes 0-9/%d", size), "0123456789", ""},
		{"suffix", map[string]string{"Range": "bytes=-5"}, http.StatusPartialContent, fmt.Sprintf("bytes %d-%d/%d", size-5, size-1, size), helloBody[size-5:], ""},
		{"open ended", map[string]string{"Range": "bytes=30-"}, http.StatusPartialContent, fmt.Sprintf("bytes 30-%d/%d", size-1, size), helloBody[30:], ""},
		{"unsatisfiable", map[string]string{"Range": "bytes=1000-2000"}, http.StatusRequestedRangeNotSatisfiable, fmt.Sprintf("bytes */%d", size), "", ""},
		{"if-range matching", map[string]string{"Range": "bytes=0-9", "If-Range": tag}, http.StatusPartialContent, fmt.Sprintf("bytes 0-9/%d", size), "0123456789", ""},
		{"if-range stale", map[string]string{"Range": "bytes=0-9", "If-Range": `"stale"`}, http.StatusOK, "", helloBody, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := serve(h, "GET", "/static/hello.txt", tt.hdr)
			if got := w.Code; got != tt.wantCode {
				t.Fatalf("status: got %d, want %d", got, tt.wantCode)
			}
			if got := w.Header().Get("Content-Range"); got != tt.wantRange {
				t.Errorf("Content-Range: got %q, want %q", got, tt.wantRange)
			}
			if tt.wantCode == http.StatusRequestedRangeNotSatisfiable {
				return
			}
			if got := w.Body.String(); got != tt.wantBody {
				t.Errorf("body: got %q, want %q", got, tt.wantBody)
			}
			if got, want := w.Header().Get("Content-Length"), strconv.Itoa(len(tt.wantBody)); got != want {
				t.Errorf("Content-Length: got %q, want %q", got, want)
			}
		})
	}

	t.Run("multipart", func(t *testing.T) {
		w := serve(h, "GET", "/static/hello.txt", map[string]string{"Range": "bytes=0-1,10-11"})
		if got, want := w.Code, http.StatusPartialContent; got != want {
			t.Fatalf("status: got %d, want %d", got, want)
		}
		if got := w.Header().Get("Content-Type"); !strings.HasPrefix(got, "multipart/byteranges; boundary=") {
			t.Errorf("Content-Type: got %q, want multipart/byteranges", got)
		}
		body := w.Body.String()
		for _, want := range []string{"Content-Range: bytes 0-1/", "\r\n01\r\n", "Content-Range: bytes 10-11/", "\r\nab\r\n"} {
			if !strings.Contains(body, want) {
				t.Errorf("multipart body: got %q, want it to contain %q", body, want)
			}
		}
	})

	t.Run("range on precompressed applies to compressed bytes", func(t *testing.T) {
		w := serve(h, "GET", "/static/app.js", map[string]string{"Range": "bytes=0-1", "Accept-Encoding": "br"})
		if got, want := w.Code, http.StatusPartialContent; got != want {
			t.Fatalf("status: got %d, want %d", got, want)
		}
		if got, want := w.Body.String(), "BR"; got != want {
			t.Errorf("body: got %q, want %q", got, want)
		}
		if got, want := w.Header().Get("Content-Encoding"), "br"; got != want {
			t.Errorf("Content-Encoding: got %q, want %q", got, want)
		}
		if got, want := w.Header().Get("Content-Range"), "bytes 0-1/8"; got != want {
			t.Errorf("Content-Range: got %q, want %q", got, want)
		}
	})
}

func TestPrecompressed(t *testing.T) {
	_, root := buildTree(t)
	h := newHandler(t, Options{Prefix: "/static/", Root: root, Index: "index.html"})
	js := filepath.Join(root, "app.js")
	jsType := serve(h, "GET", "/static/app.js", nil).Header().Get("Content-Type")
	if !strings.Contains(jsType, "javascript") {
		t.Fatalf("Content-Type for .js: got %q, want a javascript type", jsType)
	}

	tests := []struct {
		name     string
		target   string
		accept   string
		wantEnc  string
		wantBody string
		wantETag string
		wantType string
		wantVary bool
	}{
		{"br preferred over gzip", "/static/app.js", "gzip, deflate, br", "br", "BR-BYTES", wantETag(t, js+".br", "-br"), jsType, true},
		{"br preferred despite lower q", "/static/app.js", "gzip;q=1.0, br;q=0.5", "br", "BR-BYTES", wantETag(t, js+".br", "-br"), jsType, true},
		{"gzip when only gzip accepted", "/static/app.js", "gzip", "gzip", "GZ-BYTES-LONGER", wantETag(t, js+".gz", "-gz"), jsType, true},
		{"gzip when br refused", "/static/app.js", "br;q=0, gzip", "gzip", "GZ-BYTES-LONGER", wantETag(t, js+".gz", "-gz"), jsType, true},
		{"x-gzip alias", "/static/app.js", "x-gzip", "gzip", "GZ-BYTES-LONGER", wantETag(t, js+".gz", "-gz"), jsType, true},
		{"star accepts br", "/static/app.js", "*", "br", "BR-BYTES", wantETag(t, js+".br", "-br"), jsType, true},
		{"star with br refused", "/static/app.js", "*, br;q=0", "gzip", "GZ-BYTES-LONGER", wantETag(t, js+".gz", "-gz"), jsType, true},
		{"identity when gzip q=0", "/static/app.js", "gzip;q=0", "", "console.log('plain');", wantETag(t, js, ""), jsType, true},
		{"identity when q=0.000", "/static/app.js", "br;q=0.000, gzip;Q=0.0", "", "console.log('plain');", wantETag(t, js, ""), jsType, true},
		{"identity when star q=0", "/static/app.js", "*;q=0", "", "console.log('plain');", wantETag(t, js, ""), jsType, true},
		{"identity on malformed q", "/static/app.js", "br;q=x, gzip;q=2", "", "console.log('plain');", wantETag(t, js, ""), jsType, true},
		{"identity without header", "/static/app.js", "", "", "console.log('plain');", wantETag(t, js, ""), jsType, true},
		{"small positive q", "/static/app.js", "br;q=0.001", "br", "BR-BYTES", wantETag(t, js+".br", "-br"), jsType, true},
		{"gzip only sibling, br asked", "/static/style.css", "br", "", "body{}", wantETag(t, filepath.Join(root, "style.css"), ""), "text/css; charset=utf-8", true},
		{"gzip only sibling", "/static/style.css", "br, gzip", "gzip", "GZ-CSS", wantETag(t, filepath.Join(root, "style.css.gz"), "-gz"), "text/css; charset=utf-8", true},
		{"no sibling no vary", "/static/hello.txt", "br, gzip", "", helloBody, wantETag(t, filepath.Join(root, "hello.txt"), ""), "text/plain; charset=utf-8", false},
		{"directory named like sibling ignored", "/static/odd.txt", "br", "", "odd", wantETag(t, filepath.Join(root, "odd.txt"), ""), "text/plain; charset=utf-8", false},
		{"index gzip", "/static/sub/", "gzip", "gzip", "GZ-INDEX", wantETag(t, filepath.Join(root, "sub", "index.html.gz"), "-gz"), "text/html; charset=utf-8", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tt.accept != "" {
				hdr["Accept-Encoding"] = tt.accept
			}
			w := serve(h, "GET", tt.target, hdr)
			if got, want := w.Code, http.StatusOK; got != want {
				t.Fatalf("status: got %d, want %d", got, want)
			}
			if got := w.Header().Get("Content-Encoding"); got != tt.wantEnc {
				t.Errorf("Content-Encoding: got %q, want %q", got, tt.wantEnc)
			}
			if got := w.Body.String(); got != tt.wantBody {
				t.Errorf("body: got %q, want %q", got, tt.wantBody)
			}
			if got, want := w.Header().Get("Content-Length"), strconv.Itoa(len(tt.wantBody)); got != want {
				t.Errorf("Content-Length: got %q, want %q", got, want)
			}
			if got := w.Header().Get("ETag"); got != tt.wantETag {
				t.Errorf("ETag: got %q, want %q", got, tt.wantETag)
			}
			if got := w.Header().Get("Content-Type"); got != tt.wantType {
				t.Errorf("Content-Type: got %q, want %q", got, tt.wantType)
			}
			gotVary := w.Header().Get("Vary") == "Accept-Encoding"
			if gotVary != tt.wantVary {
				t.Errorf("Vary: Accept-Encoding present: got %v, want %v (Vary=%q)", gotVary, tt.wantVary, w.Header().Values("Vary"))
			}
		})
	}
}

func TestPrecompressedOverRealConnection(t *testing.T) {
	_, root := buildTree(t)
	h := newHandler(t, Options{Prefix: "/static/", Root: root})
	srv := httptest.NewServer(h)
	defer srv.Close()

	tests := []struct {
		name     string
		accept   string
		wantEnc  string
		wantBody string
	}{
		{"br", "br", "br", "BR-BYTES"},
		{"gzip", "gzip", "gzip", "GZ-BYTES-LONGER"},
		{"identity", "identity", "", "console.log('plain');"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest("GET", srv.URL+"/static/app.js", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Accept-Encoding", tt.accept)
			// A bare Transport would gunzip transparently only when it
			// added Accept-Encoding itself; here it was set explicitly.
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.Header.Get("Content-Encoding"); got != tt.wantEnc {
				t.Errorf("Content-Encoding: got %q, want %q", got, tt.wantEnc)
			}
			if got := string(body); got != tt.wantBody {
				t.Errorf("body: got %q, want %q", got, tt.wantBody)
			}
			if got, want := resp.ContentLength, int64(len(tt.wantBody)); got != want {
				t.Errorf("Content-Length: got %d, want %d", got, want)
			}
			if got := resp.TransferEncoding; len(got) != 0 {
				t.Errorf("Transfer-Encoding: got %q, want none", got)
			}
		})
	}
}

func TestTraversalRefused(t *testing.T) {
	_, root := buildTree(t)
	h := newHandler(t, Options{Prefix: "/static/", Root: root, Index: "index.html"})
	srv := httptest.NewServer(h)
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	targets := []struct {
		name   string
		target string
	}{
		{"dotdot", "/static/../secret"},
		{"encoded dotdot", "/static/%2e%2e/secret"},
		{"upper encoded dotdot", "/static/%2E%2E/secret"},
		{"encoded slash", "/static/..%2fsecret"},
		{"encoded slash upper", "/static/..%2Fsecret"},
		{"fully encoded", "/static/%2e%2e%2fsecret"},
		{"nested dotdot", "/static/sub/../../secret"},
		{"trailing dotdot", "/static/sub/.."},
		{"dotdot into outside", "/static/../outside/secret.txt"},
		{"backslash", "/static/..%5csecret"},
		{"nul", "/static/hello.txt%00"},
		{"symlink to outside file", "/static/link-out"},
		{"relative symlink to outside file", "/static/link-out-rel"},
		{"symlink to outside dir", "/static/linkdir-out/secret.txt"},
		{"symlink to outside dir listing", "/static/linkdir-out/"},
		{"nested symlink climbing out", "/static/sub/link-up"},
		{"double slash absolute", "/static//etc/passwd"},
		{"fifo", "/static/fifo"},
	}
	for _, tt := range targets {
		t.Run(tt.name, func(t *testing.T) {
			w := serve(h, "GET", tt.target, map[string]string{"Accept-Encoding": "br, gzip"})
			if got, want := w.Code, http.StatusNotFound; got != want {
				t.Errorf("in-process status: got %d, want %d", got, want)
			}
			checkNoSecret(t, "in-process body", w.Body.String())
			checkNoPath(t, root, w.Body.String())

			code, body := rawGet(t, addr, tt.target)
			if got, want := code, http.StatusNotFound; got != want {
				t.Errorf("raw status: got %d, want %d", got, want)
			}
			checkNoSecret(t, "raw body", body)
			checkNoPath(t, root, body)
		})
	}
}

func checkNoSecret(t *testing.T, what, body string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(body, s) {
			t.Errorf("%s: got %q, contains outside content %q", what, body, s)
		}
	}
}

func checkNoPath(t *testing.T, root, body string) {
	t.Helper()
	if strings.Contains(body, root) || strings.Contains(body, "root/") {
		t.Errorf("body leaks filesystem path: %q", body)
	}
}

func TestDirectories(t *testing.T) {
	_, root := buildTree(t)
	withIndex := newHandler(t, Options{Prefix: "/static/", Root: root, Index: "index.html"})
	noIndex := newHandler(t, Options{Prefix: "/static/", Root: root})
	slashRoot := newHandler(t, Options{Prefix: "/", Root: root, Index: "index.html"})

	tests := []struct {
		name         string
		h            http.Handler
		target       string
		wantCode     int
		wantLocation string
		wantBody     string
	}{
		{"redirect without slash", withIndex, "/static/sub", http.StatusMovedPermanently, "/static/sub/", ""},
		{"redirect keeps query", withIndex, "/static/sub?a=1&b=%20", http.StatusMovedPermanently, "/static/sub/?a=1&b=%20", ""},
		{"redirect keeps encoding", withIndex, "/static/s%75b", http.StatusMovedPermanently, "/static/s%75b/", ""},
		{"redirect symlinked dir", withIndex, "/static/linkdir-in", http.StatusMovedPermanently, "/static/linkdir-in/", ""},
		{"redirect without index", noIndex, "/static/sub", http.StatusMovedPermanently, "/static/sub/", ""},
		{"index served", withIndex, "/static/sub/", http.StatusOK, "", "<h1>sub index</h1>"},
		{"index via symlinked dir", withIndex, "/static/linkdir-in/", http.StatusOK, "", "<h1>sub index</h1>"},
		{"root index", withIndex, "/static/", http.StatusOK, "", "<h1>top index</h1>"},
		{"root index slash prefix", slashRoot, "/", http.StatusOK, "", "<h1>top index</h1>"},
		{"no index option", noIndex, "/static/sub/", http.StatusNotFound, "", ""},
		{"no index option at root", noIndex, "/static/", http.StatusNotFound, "", ""},
		{"index file missing", withIndex, "/static/noindex/", http.StatusNotFound, "", ""},
		{"file with trailing slash", withIndex, "/static/hello.txt/", http.StatusNotFound, "", ""},
		{"missing file", withIndex, "/static/nope.txt", http.StatusNotFound, "", ""},
		{"outside prefix", withIndex, "/other/hello.txt", http.StatusNotFound, "", ""},
		{"prefix without slash", withIndex, "/static", http.StatusNotFound, "", ""},
		{"no protocol-relative redirect", slashRoot, "//sub", http.StatusMovedPermanently, "/sub/", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := serve(tt.h, "GET", tt.target, nil)
			if got := w.Code; got != tt.wantCode {
				t.Fatalf("status: got %d, want %d", got, tt.wantCode)
			}
			if got := w.Header().Get("Location"); got != tt.wantLocation {
				t.Errorf("Location: got %q, want %q", got, tt.wantLocation)
			}
			switch tt.wantCode {
			case http.StatusOK:
				if got := w.Body.String(); got != tt.wantBody {
					t.Errorf("body: got %q, want %q", got, tt.wantBody)
				}
				if got, want := w.Header().Get("Content-Type"), "text/html; charset=utf-8"; got != want {
					t.Errorf("Content-Type: got %q, want %q", got, want)
				}
			case http.StatusNotFound:
				if body := w.Body.String(); strings.Contains(body, "<a href") || strings.Contains(body, "file.txt") {
					t.Errorf("body: got %q, want no listing", body)
				}
			}
		})
	}
}

func TestMethods(t *testing.T) {
	_, root := buildTree(t)
	h := newHandler(t, Options{Prefix: "/static/", Root: root})
	tests := []struct {
		method   string
		wantCode int
	}{
		{"GET", http.StatusOK},
		{"HEAD", http.StatusOK},
		{"POST", http.StatusMethodNotAllowed},
		{"PUT", http.StatusMethodNotAllowed},
		{"DELETE", http.StatusMethodNotAllowed},
		{"OPTIONS", http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			w := serve(h, tt.method, "/static/hello.txt", nil)
			if got := w.Code; got != tt.wantCode {
				t.Fatalf("status: got %d, want %d", got, tt.wantCode)
			}
			if tt.wantCode != http.StatusMethodNotAllowed {
				return
			}
			if got, want := w.Header().Get("Allow"), "GET, HEAD"; got != want {
				t.Errorf("Allow: got %q, want %q", got, want)
			}
			if strings.Contains(w.Body.String(), helloBody) {
				t.Errorf("body: got file content on %s", tt.method)
			}
		})
	}
}

func TestClosed(t *testing.T) {
	_, root := buildTree(t)
	h, err := New(Options{Prefix: "/", Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatalf("Close: got %v, want nil", err)
	}
	if got, want := serve(h, "GET", "/hello.txt", nil).Code, http.StatusNotFound; got != want {
		t.Errorf("status after Close: got %d, want %d", got, want)
	}
}

func TestAcceptedEncodings(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   encodings
	}{
		{"none", nil, 0},
		{"empty", []string{""}, 0},
		{"br", []string{"br"}, acceptBr},
		{"gzip", []string{"gzip"}, acceptGzip},
		{"both", []string{"gzip, br"}, acceptBr | acceptGzip},
		{"case and spaces", []string{"  GZip ; Q = 0.5 ,BR"}, acceptBr | acceptGzip},
		{"split over headers", []string{"gzip", "br;q=0.1"}, acceptBr | acceptGzip},
		{"q zero", []string{"gzip;q=0"}, 0},
		{"q zero point", []string{"gzip;q=0."}, 0},
		{"q zero decimals", []string{"gzip;q=0.000"}, 0},
		{"q small", []string{"gzip;q=0.001"}, acceptGzip},
		{"q one", []string{"gzip;q=1.000"}, acceptGzip},
		{"q too many digits", []string{"gzip;q=0.0001"}, 0},
		{"q above one", []string{"gzip;q=1.5"}, 0},
		{"q garbage", []string{"gzip;q=yes"}, 0},
		{"q empty", []string{"gzip;q="}, 0},
		{"other param", []string{"gzip;level=1"}, acceptGzip},
		{"star", []string{"*"}, acceptBr | acceptGzip},
		{"star refused", []string{"*;q=0"}, 0},
		{"star with explicit refusal", []string{"*, gzip;q=0"}, acceptBr},
		{"explicit overrides refused star", []string{"*;q=0, br"}, acceptBr},
		{"identity only", []string{"identity"}, 0},
		{"deflate only", []string{"deflate, compress"}, 0},
		{"br substring is not br", []string{"brotli, gzipx"}, 0},
		{"empty elements", []string{",,gzip,,"}, acceptGzip},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := acceptedEncodings(tt.values); got != tt.want {
				t.Errorf("acceptedEncodings(%q): got %b, want %b", tt.values, got, tt.want)
			}
		})
	}
}

func TestContentTypeFallback(t *testing.T) {
	tests := []struct {
		ext  string
		want string
	}{
		{"", "application/octet-stream"},
		{".zzunknown", "application/octet-stream"},
		{".woff2", "font/woff2"},
		{".wasm", "application/wasm"},
		{".svg", "image/svg+xml"},
		{".CSS", "text/css; charset=utf-8"},
	}
	for _, tt := range tests {
		t.Run(tt.ext, func(t *testing.T) {
			if got := lookupType(tt.ext); got != tt.want {
				t.Errorf("lookupType(%q): got %q, want %q", tt.ext, got, tt.want)
			}
		})
	}
}

func TestWithCharset(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"text/plain", "text/plain; charset=utf-8"},
		{"text/html; charset=iso-8859-1", "text/html; charset=iso-8859-1"},
		{"text/javascript; charset=utf-8", "text/javascript; charset=utf-8"},
		{"application/javascript", "application/javascript; charset=utf-8"},
		{"application/json", "application/json; charset=utf-8"},
		{"image/png", "image/png"},
		{"application/wasm", "application/wasm"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := withCharset(tt.in); got != tt.want {
				t.Errorf("withCharset(%q): got %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestAllocations(t *testing.T) {
	_, root := buildTree(t)
	h := newHandler(t, Options{Prefix: "/static/", Root: root, MaxAge: time.Hour})
	r := httptest.NewRequest("GET", "/static/hello.txt", nil)
	w := &discardWriter{h: http.Header{}}
	h.ServeHTTP(w, r) // warm the Content-Type cache
	allocs := testing.AllocsPerRun(100, func() {
		clear(w.h)
		h.ServeHTTP(w, r)
	})
	// Dominated by os.Root's open (path copies, *os.File, FileInfo) and
	// ServeContent; the bound catches accidental per-request blowups.
	if allocs > 40 {
		t.Errorf("allocations per request: got %.0f, want <= 40", allocs)
	}
}

type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}

func FuzzPath(f *testing.F) {
	_, root := buildTree(f)
	handlers := []*Handler{
		newHandler(f, Options{Prefix: "/static/", Root: root, Index: "index.html"}),
		newHandler(f, Options{Prefix: "/", Root: root, Index: "index.html"}),
	}
	for _, s := range []string{
		"hello.txt", "../secret", "%2e%2e/secret", "..%2fsecret", "sub/../../secret",
		"link-out", "link-out-rel", "linkdir-out/secret.txt", "linkdir-out/", "sub/link-up",
		"/../outside/secret.txt", "..\\secret", "sub/%2e%2e/%2e%2e/secret", "fifo", "linkdir-in/",
		"app.js", "%00", "//", "./", ".%2e/secret", "linkdir-out/secret.txt%00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, h := range handlers {
			var reqs []*http.Request
			// s as an already-decoded path.
			reqs = append(reqs, &http.Request{
				Method: "GET",
				URL:    &url.URL{Path: h.prefix + s},
				Header: http.Header{"Accept-Encoding": {"br, gzip"}},
			})
			// s as a raw request target, decoded the way the server would.
			if u, err := url.ParseRequestURI(h.prefix + s); err == nil {
				reqs = append(reqs, &http.Request{
					Method: "GET",
					URL:    u,
					Header: http.Header{"Accept-Encoding": {"br, gzip"}},
				})
			}
			// s as the whole path, prefix or not.
			reqs = append(reqs, &http.Request{
				Method: "GET",
				URL:    &url.URL{Path: s},
				Header: http.Header{"Accept-Encoding": {"gzip"}},
			})
			for _, r := range reqs {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				body := w.Body.String()
				for _, sec := range secrets {
					if strings.Contains(body, sec) {
						t.Fatalf("path %q (raw %q): body %q contains outside content", r.URL.Path, r.URL.RawPath, body)
					}
				}
				if strings.Contains(body, root) {
					t.Fatalf("path %q: body %q leaks the root path", r.URL.Path, body)
				}
				if loc := w.Header().Get("Location"); strings.HasPrefix(loc, "//") {
					t.Fatalf("path %q: protocol-relative Location %q", r.URL.Path, loc)
				}
			}
		}
	})
}

// TestFixtureTree keeps testdata/static-test consistent: its precompressed
// siblings must decode to the original and be chosen as documented.
func TestFixtureTree(t *testing.T) {
	dir, err := filepath.Abs(filepath.Join("..", "..", "testdata", "static-test"))
	if err != nil {
		t.Fatal(err)
	}
	h := newHandler(t, Options{Prefix: "/", Root: dir, Index: "index.html"})
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	t.Run("gzip sibling decodes to original", func(t *testing.T) {
		zr, err := gzip.NewReader(strings.NewReader(read("app.js.gz")))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		if want := read("app.js"); string(got) != want {
			t.Errorf("gunzipped app.js.gz: got %q, want %q", got, want)
		}
	})

	tests := []struct {
		name     string
		target   string
		accept   string
		wantCode int
		wantEnc  string
		wantBody string
	}{
		{"br", "/app.js", "gzip, br", http.StatusOK, "br", read("app.js.br")},
		{"gzip", "/app.js", "gzip", http.StatusOK, "gzip", read("app.js.gz")},
		{"identity", "/app.js", "", http.StatusOK, "", read("app.js")},
		{"top index", "/", "", http.StatusOK, "", read("index.html")},
		{"sub index", "/sub/", "", http.StatusOK, "", read("sub/index.html")},
		{"sub redirect", "/sub", "", http.StatusMovedPermanently, "", ""},
		{"no index", "/noindex/", "", http.StatusNotFound, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := serve(h, "GET", tt.target, map[string]string{"Accept-Encoding": tt.accept})
			if got := w.Code; got != tt.wantCode {
				t.Fatalf("status: got %d, want %d", got, tt.wantCode)
			}
			if tt.wantCode != http.StatusOK {
				return
			}
			if got := w.Header().Get("Content-Encoding"); got != tt.wantEnc {
				t.Errorf("Content-Encoding: got %q, want %q", got, tt.wantEnc)
			}
			if got := w.Body.String(); got != tt.wantBody {
				t.Errorf("body: got %q, want %q", got, tt.wantBody)
			}
		})
	}
}

// reasonRecorder is an httptest.ResponseRecorder that keeps the reason.
type reasonRecorder struct {
	*httptest.ResponseRecorder
	reason string
}

func (r *reasonRecorder) SetReason(why string) { r.reason = why }

// A file edged may not read is a 403 with the cause for the log; one
// that is not there a 404 with none.
func TestOpenFailedReason(t *testing.T) {
	h := &Handler{}
	for _, tt := range []struct {
		err    error
		status int
		reason string
	}{
		{&fs.PathError{Op: "openat", Path: "secret.txt", Err: fs.ErrPermission}, 403, "may not read it: openat secret.txt: permission denied"},
		{&fs.PathError{Op: "openat", Path: "gone.txt", Err: fs.ErrNotExist}, 404, ""},
	} {
		w := &reasonRecorder{ResponseRecorder: httptest.NewRecorder()}
		h.openFailed(w, httptest.NewRequest("GET", "/static/x", nil), tt.err)
		if w.Code != tt.status || !strings.Contains(w.reason, tt.reason) || (tt.reason == "") != (w.reason == "") {
			t.Errorf("%v: %d, reason %q; want %d, a reason with %q", tt.err, w.Code, w.reason, tt.status, tt.reason)
		}
	}
}
