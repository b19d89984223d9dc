package static

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A small file is served from memory until the TTL passes; then a change,
// a removal, or a new precompressed variant shows.
func TestSmallFileCache(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "a.txt")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("first version\n")
	h := newHandler(t, Options{Prefix: "/s/", Root: root})
	h.small.ttl = 200 * time.Millisecond

	get := func(hdr map[string]string) (int, string, string) {
		w := serve(h, "GET", "/s/a.txt", hdr)
		return w.Code, w.Body.String(), w.Header().Get("Content-Encoding")
	}
	if code, body, _ := get(nil); code != 200 || body != "first version\n" {
		t.Fatalf("first: %d %q", code, body)
	}
	if len(h.small.files) != 1 {
		t.Fatalf("%d files cached after the first request, want 1", len(h.small.files))
	}
	write("second, longer version\n")
	if _, body, _ := get(nil); body != "first version\n" {
		t.Errorf("within the TTL: %q, want the cached first version", body)
	}
	time.Sleep(250 * time.Millisecond)
	if _, body, _ := get(nil); body != "second, longer version\n" {
		t.Errorf("after the TTL: %q, want the second version", body)
	}
	// Ranges and conditional requests work on the cached copy.
	w := serve(h, "GET", "/s/a.txt", map[string]string{"Range": "bytes=0-5"})
	if w.Code != 206 || w.Body.String() != "second" {
		t.Errorf("a range of the cached file: %d %q, want 206 \"second\"", w.Code, w.Body.String())
	}
	w = serve(h, "GET", "/s/a.txt", map[string]string{"If-None-Match": w.Header().Get("Etag")})
	if w.Code != 304 {
		t.Errorf("If-None-Match with its ETag: %d, want 304", w.Code)
	}
	// A gzip variant appears: a client that takes gzip gets it once the
	// TTL has passed; the cache keeps the two apart.
	if err := os.WriteFile(file+".gz", []byte("GZ"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(250 * time.Millisecond)
	if _, body, enc := get(map[string]string{"Accept-Encoding": "gzip"}); body != "GZ" || enc != "gzip" {
		t.Errorf("with gzip accepted: %q (%q), want the .gz variant", body, enc)
	}
	if _, body, enc := get(nil); body != "second, longer version\n" || enc != "" {
		t.Errorf("without: %q (%q), want the plain file", body, enc)
	}
	os.Remove(file)
	os.Remove(file + ".gz")
	time.Sleep(250 * time.Millisecond)
	if code, _, _ := get(nil); code != 404 {
		t.Errorf("after removal and the TTL: %d, want 404", code)
	}
}

// Large files are not kept, and what is kept stays under the bound.
func TestSmallFileCacheBounded(t *testing.T) {
	root := t.TempDir()
	for i := 0; i < 20; i++ {
		os.WriteFile(filepath.Join(root, strings.Repeat("f", i+1)), make([]byte, 10<<10), 0o644)
	}
	os.WriteFile(filepath.Join(root, "big"), make([]byte, smallFileMax+1), 0o644)
	h := newHandler(t, Options{Prefix: "/", Root: root})
	h.small.max = 50 << 10
	for i := 0; i < 20; i++ {
		if w := serve(h, "GET", "/"+strings.Repeat("f", i+1), nil); w.Code != 200 || w.Body.Len() != 10<<10 {
			t.Fatalf("file %d: %d, %d bytes", i, w.Code, w.Body.Len())
		}
		if h.small.bytes > h.small.max {
			t.Fatalf("%d bytes cached, over the %d bound", h.small.bytes, h.small.max)
		}
	}
	if w := serve(h, "GET", "/big", nil); w.Code != 200 || w.Body.Len() != smallFileMax+1 {
		t.Fatalf("big: %d, %d bytes", w.Code, w.Body.Len())
	}
	for k := range h.small.files {
		if k.path == "big" {
			t.Errorf("a file over smallFileMax was cached")
		}
	}
}
