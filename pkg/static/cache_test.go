package static

import (
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
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

// A plain GET or HEAD of a cached file is answered without ServeContent:
// its status, head and body are the ones ServeContent gives, for a file
// with and without a precompressed variant, a Cache-Control, and a file
// dated 1970 (no Last-Modified).
func TestSmallFileFastPathLikeServeContent(t *testing.T) {
	root := t.TempDir()
	for name, body := range map[string]string{"a.txt": "plain text\n", "b.css": "b{}", "b.css.gz": "GZ", "old.html": "<p>"} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(filepath.Join(root, "old.html"), time.Unix(0, 0), time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	for _, maxAge := range []time.Duration{0, time.Hour} {
		h := newHandler(t, Options{Prefix: "/s/", Root: root, MaxAge: maxAge})
		for _, path := range []string{"/s/a.txt", "/s/b.css", "/s/old.html"} {
			for _, method := range []string{"GET", "HEAD"} {
				for _, accept := range []string{"", "gzip"} {
					hdr := map[string]string{}
					if accept != "" {
						hdr["Accept-Encoding"] = accept
					}
					serve(h, method, path, hdr) // loads the cache
					sf := h.small.get(strings.TrimPrefix(path, "/s/"), acceptedEncodings([]string{accept}), time.Now())
					if sf == nil {
						t.Fatalf("%s not cached", path)
					}
					fast := serve(h, method, path, hdr)
					r := httptest.NewRequest(method, path, nil)
					for k, v := range hdr {
						r.Header.Set(k, v)
					}
					slow := httptest.NewRecorder()
					h.serve(slow, r, sf.name, sf.reader(), sf.modTime, sf.etag, sf.ctype, sf.enc, sf.vary)
					what := fmt.Sprintf("%s %s (Accept-Encoding %q, max-age %v)", method, path, accept, maxAge)
					if fast.Code != slow.Code || fast.Body.String() != slow.Body.String() {
						t.Errorf("%s: %d %q, ServeContent gives %d %q", what, fast.Code, fast.Body, slow.Code, slow.Body)
					}
					if !reflect.DeepEqual(fast.Header(), slow.Header()) {
						t.Errorf("%s: head %v, ServeContent gives %v", what, fast.Header(), slow.Header())
					}
				}
			}
		}
	}
}
