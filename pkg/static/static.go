// Package static serves the files of one directory under a URL prefix,
// in the manner of nginx's "location /prefix/ { alias DIR/; }".
//
// All file access goes through an [os.Root], so no request path, however
// it is encoded, and no symlink inside the directory can reach a file
// outside it.
package static

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options for one static root.
type Options struct {
	Prefix string        // URL prefix, always starts and ends with "/", e.g. "/static/" or "/"
	Root   string        // directory (absolute path)
	MaxAge time.Duration // when > 0, send "Cache-Control: public, max-age=N"; 0 sends no Cache-Control
	Index  string        // index file name for directory requests, e.g. "index.html"; "" = no index (directories 404)
}

// Handler serves files below one directory. It is safe for concurrent use.
type Handler struct {
	prefix       string
	index        string
	cacheControl string // "" when no Cache-Control is sent
	root         *os.Root

	// ctypes caches the final Content-Type (charset included) per file
	// extension, so the common case costs one map lookup and no allocation.
	ctypes sync.Map // string -> string

	small smallFiles
}

var _ http.Handler = (*Handler)(nil)

// New opens the root with os.OpenRoot so no path (.., encoded %2e%2e,
// symlinks pointing outside) can escape it. It returns an error naming the
// directory if it cannot be opened or is not a directory.
func New(o Options) (*Handler, error) {
	if !strings.HasPrefix(o.Prefix, "/") || !strings.HasSuffix(o.Prefix, "/") {
		return nil, fmt.Errorf("static: prefix %q must start and end with \"/\"", o.Prefix)
	}
	if o.Root == "" {
		return nil, errors.New("static: empty root directory")
	}
	root, err := os.OpenRoot(o.Root)
	if err != nil {
		return nil, fmt.Errorf("static: open root %q: %w", o.Root, err)
	}
	fi, err := root.Stat(".")
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("static: stat root %q: %w", o.Root, err)
	}
	if !fi.IsDir() {
		root.Close()
		return nil, fmt.Errorf("static: root %q is not a directory", o.Root)
	}
	h := &Handler{prefix: o.Prefix, index: o.Index, root: root, small: smallFiles{ttl: smallFileTTL, max: smallCacheMax}}
	if o.MaxAge > 0 {
		h.cacheControl = "public, max-age=" + strconv.FormatInt(int64(o.MaxAge/time.Second), 10)
	}
	return h, nil
}

// Close releases the directory handle. Requests served afterwards get 404.
func (h *Handler) Close() error {
	return h.root.Close()
}

// ServeHTTP serves GET and HEAD requests for files below the root.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
		return
	}

	upath := r.URL.Path
	if !strings.HasPrefix(upath, h.prefix) || unsafePath(upath) ||
		(r.URL.RawPath != "" && unsafePath(r.URL.RawPath)) {
		http.NotFound(w, r)
		return
	}
	rest := upath[len(h.prefix):]
	wantDir := rest == "" || rest[len(rest)-1] == '/'
	// Empty segments are merged as nginx does; a leading "/" would
	// otherwise be an absolute path, which os.Root refuses.
	name := strings.Trim(rest, "/")
	if name == "" {
		name = "."
	}
	acc := acceptedEncodings(r.Header["Accept-Encoding"])
	now := time.Now()
	if sf := h.small.get(rest, acc, now); sf != nil {
		h.serveSmall(w, r, sf)
		return
	}

	f, fi, err := h.open(name)
	if err != nil {
		h.openFailed(w, r, err)
		return
	}
	if fi.IsDir() {
		f.Close()
		if !wantDir {
			redirectToDir(w, r)
			return
		}
		if h.index == "" {
			http.NotFound(w, r)
			return
		}
		if name == "." {
			name = h.index
		} else {
			name = name + "/" + h.index
		}
		f, fi, err = h.open(name)
		if err != nil {
			h.openFailed(w, r, err)
			return
		}
		if fi.IsDir() {
			f.Close()
			http.NotFound(w, r)
			return
		}
	} else if wantDir {
		// "file.txt/" names a directory that does not exist.
		f.Close()
		http.NotFound(w, r)
		return
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		http.NotFound(w, r)
		return
	}

	ctype := h.contentType(name)
	enc, suffix, vary := "", "", false
	if sf, sfi, e, sx, v := h.pickSibling(name, acc); sf != nil {
		f.Close()
		f, fi, enc, suffix, vary = sf, sfi, e, sx, v
	} else {
		vary = v
	}
	defer f.Close()
	tag := etag(fi, suffix)
	if sf := h.small.add(rest, acc, now, f, fi, name, tag, ctype, enc, vary); sf != nil {
		h.serve(w, r, name, sf.reader(), fi.ModTime(), tag, ctype, enc, vary)
		return
	}
	// The *os.File goes to ServeContent as it is, so that the server can
	// use sendfile.
	h.serve(w, r, name, f, fi.ModTime(), tag, ctype, enc, vary)
}

// serve sends content with the headers every answer of a file carries;
// ServeContent does the rest (conditional requests, ranges, HEAD).
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, name string, content io.ReadSeeker, modTime time.Time, tag, ctype, enc string, vary bool) {
	h.head(w.Header(), make([]string, 0, 3), ctype, tag, vary)
	if enc == "" {
		http.ServeContent(w, r, name, modTime, content)
		return
	}
	http.ServeContent(&encodingWriter{ResponseWriter: w, enc: enc}, r, name, modTime, content)
}

// serveSmall answers from the small-file cache. A plain GET or HEAD (the
// most of them) gets the whole file with the head ServeContent would
// give it, built from what the cache formatted once: ServeContent's
// checks, formatting and copying were 12% of edged's CPU on a 4 KiB file.
// A conditional or range request goes to ServeContent.
func (h *Handler) serveSmall(w http.ResponseWriter, r *http.Request, sf *smallFile) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead || conditional(r.Header) {
		h.serve(w, r, sf.name, sf.reader(), sf.modTime, sf.etag, sf.ctype, sf.enc, sf.vary)
		return
	}
	hdr := w.Header()
	vals := h.head(hdr, make([]string, 0, 7), sf.ctype, sf.etag, sf.vary)
	if sf.lastModified != "" {
		vals = setHeader(hdr, vals, "Last-Modified", sf.lastModified)
	}
	vals = setHeader(hdr, vals, "Accept-Ranges", "bytes")
	vals = setHeader(hdr, vals, "Content-Length", sf.length)
	if sf.enc != "" {
		setHeader(hdr, vals, "Content-Encoding", sf.enc)
	}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(sf.data)
	}
}

// head sets the headers every answer of a file carries, their values
// appended to vals (one backing array for all of an answer's values), and
// returns vals.
func (h *Handler) head(hdr http.Header, vals []string, ctype, tag string, vary bool) []string {
	vals = setHeader(hdr, vals, "Content-Type", ctype)
	vals = setHeader(hdr, vals, "Etag", tag)
	if h.cacheControl != "" {
		vals = setHeader(hdr, vals, "Cache-Control", h.cacheControl)
	}
	if vary {
		hdr.Add("Vary", "Accept-Encoding")
	}
	return vals
}

// setHeader sets name (canonical) to v, appended to vals, and returns
// vals. Each value's slice has no room past it, so an Add to the header
// does not write into the next one's.
func setHeader(hdr http.Header, vals []string, name, v string) []string {
	vals = append(vals, v)
	hdr[name] = vals[len(vals)-1 : len(vals) : len(vals)]
	return vals
}

// conditional says whether a request asks for part of a file or for it
// only on a condition: ServeContent answers those.
func conditional(h http.Header) bool {
	for _, name := range [...]string{"Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since"} {
		if _, ok := h[name]; ok {
			return true
		}
	}
	return false
}

// open opens name below the root and stats the open file, so the result
// describes exactly what will be served. O_NONBLOCK keeps a FIFO from
// blocking the open; such files are rejected after the stat.
func (h *Handler) open(name string) (*os.File, fs.FileInfo, error) {
	f, err := h.root.OpenFile(name, os.O_RDONLY|openFlags, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// openRegular opens name and returns it only if it is a regular file.
func (h *Handler) openRegular(name string) (*os.File, fs.FileInfo) {
	f, fi, err := h.open(name)
	if err != nil {
		return nil, nil
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil
	}
	return f, fi
}

type sibling struct {
	suffix string // appended to the file name
	enc    string // Content-Encoding value
	tag    string // appended to the ETag
	bit    encodings
}

// siblings are listed in order of preference.
var siblings = [...]sibling{
	{".br", "br", "-br", acceptBr},
	{".gz", "gzip", "-gz", acceptGzip},
}

// pickSibling opens the preferred precompressed variant of name that the
// client accepts. vary reports whether any variant exists at all, since
// then the response depends on Accept-Encoding even when the original is
// served.
func (h *Handler) pickSibling(name string, acc encodings) (f *os.File, fi fs.FileInfo, enc, tag string, vary bool) {
	for _, s := range siblings {
		sname := name + s.suffix
		if f == nil && acc&s.bit != 0 {
			if sf, sfi := h.openRegular(sname); sf != nil {
				f, fi, enc, tag, vary = sf, sfi, s.enc, s.tag, true
			}
			continue
		}
		if !vary {
			if sfi, err := h.root.Stat(sname); err == nil && sfi.Mode().IsRegular() {
				vary = true
			}
		}
	}
	return f, fi, enc, tag, vary
}

// ReasonWriter is a ResponseWriter that keeps why a request was refused,
// for the access log: the client gets a bare status, the operator the
// cause.
type ReasonWriter interface {
	SetReason(string)
}

func (h *Handler) openFailed(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, fs.ErrPermission) {
		if rw, ok := w.(ReasonWriter); ok {
			rw.SetReason(fmt.Sprintf("the file is there but edged (uid %d) may not read it: %v; edged --check names the missing permission bits", os.Geteuid(), err))
		}
		http.Error(w, "403 forbidden", http.StatusForbidden)
		return
	}
	http.NotFound(w, r)
}

// unsafePath reports whether p contains a NUL byte, a backslash or a ".."
// segment. Such paths are refused outright rather than cleaned, so that no
// request is ever answered with a file other than the one it names.
func unsafePath(p string) bool {
	if strings.IndexByte(p, 0) >= 0 || strings.IndexByte(p, '\\') >= 0 {
		return true
	}
	for p != "" {
		i := strings.IndexByte(p, '/')
		seg := p
		if i >= 0 {
			seg, p = p[:i], p[i+1:]
		} else {
			p = ""
		}
		if seg == ".." {
			return true
		}
	}
	return false
}

func redirectToDir(w http.ResponseWriter, r *http.Request) {
	loc := r.URL.EscapedPath() + "/"
	// "//host/..." would be taken by browsers as a different host.
	if strings.HasPrefix(loc, "//") {
		loc = "/" + strings.TrimLeft(loc, "/")
	}
	if r.URL.RawQuery != "" {
		loc += "?" + r.URL.RawQuery
	}
	w.Header().Set("Location", loc)
	w.WriteHeader(http.StatusMovedPermanently)
}

// etag returns a strong validator built from the served file's
// modification time and size, so it changes whenever the file is replaced.
func etag(fi fs.FileInfo, suffix string) string {
	var buf [48]byte
	b := append(buf[:0], '"')
	b = strconv.AppendUint(b, uint64(fi.ModTime().UnixNano()), 16)
	b = append(b, '-')
	b = strconv.AppendUint(b, uint64(fi.Size()), 16)
	b = append(b, suffix...)
	b = append(b, '"')
	return string(b)
}

// builtinTypes covers common web types when the system MIME tables do not.
var builtinTypes = map[string]string{
	".html":  "text/html",
	".css":   "text/css",
	".js":    "text/javascript",
	".mjs":   "text/javascript",
	".json":  "application/json",
	".svg":   "image/svg+xml",
	".png":   "image/png",
	".jpg":   "image/jpeg",
	".jpeg":  "image/jpeg",
	".gif":   "image/gif",
	".webp":  "image/webp",
	".ico":   "image/x-icon",
	".txt":   "text/plain",
	".xml":   "text/xml",
	".wasm":  "application/wasm",
	".woff":  "font/woff",
	".woff2": "font/woff2",
	".pdf":   "application/pdf",
	".map":   "application/json",
}

func (h *Handler) contentType(name string) string {
	ext := path.Ext(name)
	if v, ok := h.ctypes.Load(ext); ok {
		return v.(string)
	}
	ct := lookupType(ext)
	h.ctypes.Store(ext, ct)
	return ct
}

func lookupType(ext string) string {
	if ext == "" {
		return "application/octet-stream"
	}
	ct := mime.TypeByExtension(ext)
	if ct == "" {
		ct = builtinTypes[strings.ToLower(ext)]
	}
	if ct == "" {
		return "application/octet-stream"
	}
	return withCharset(ct)
}

// withCharset adds "; charset=utf-8" to textual types that lack a charset,
// so browsers do not guess the encoding.
func withCharset(ct string) string {
	base, params, _ := strings.Cut(ct, ";")
	base = strings.ToLower(strings.TrimSpace(base))
	if !strings.HasPrefix(base, "text/") && base != "application/javascript" && base != "application/json" {
		return ct
	}
	if strings.Contains(strings.ToLower(params), "charset=") {
		return ct
	}
	return ct + "; charset=utf-8"
}

// encodingWriter adds Content-Encoding only when a 200 or 206 header is
// written. Setting it earlier would make ServeContent omit Content-Length
// on full responses, and it would be wrong on 304, 412 and 416 replies.
type encodingWriter struct {
	http.ResponseWriter
	enc         string
	wroteHeader bool
}

func (e *encodingWriter) WriteHeader(code int) {
	if !e.wroteHeader {
		e.wroteHeader = true
		if code == http.StatusOK || code == http.StatusPartialContent {
			e.Header().Set("Content-Encoding", e.enc)
		}
	}
	e.ResponseWriter.WriteHeader(code)
}

func (e *encodingWriter) Write(p []byte) (int, error) {
	if !e.wroteHeader {
		e.WriteHeader(http.StatusOK)
	}
	return e.ResponseWriter.Write(p)
}

// ReadFrom passes the file through to the server's writer so sendfile
// still applies to precompressed variants.
func (e *encodingWriter) ReadFrom(src io.Reader) (int64, error) {
	if !e.wroteHeader {
		e.WriteHeader(http.StatusOK)
	}
	if rf, ok := e.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(writerOnly{e.ResponseWriter}, src)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (e *encodingWriter) Unwrap() http.ResponseWriter {
	return e.ResponseWriter
}

// writerOnly hides ReadFrom so io.Copy does not recurse into it.
type writerOnly struct{ io.Writer }
