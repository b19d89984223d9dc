package static

import (
	"bytes"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

// The small-file cache, nginx's open_file_cache for the files where the
// system calls cost more than the bytes: a file of at most smallFileMax
// bytes is kept in memory with what its answer needs, for smallFileTTL,
// so a hot one costs no open, stat, read or close. After the TTL the next
// request looks at the file again: a change shows within a second.
// Memory is bounded by smallCacheMax; when a file would not fit, the
// cache starts afresh.
const (
	smallFileMax  = 64 << 10
	smallCacheMax = 32 << 20
	smallFileTTL  = time.Second
)

type smallKey struct {
	path string    // the request path below the prefix
	acc  encodings // what the client accepts: it picks the variant
}

type smallFile struct {
	name    string // below the root: ServeContent wants a name
	data    []byte
	modTime time.Time
	etag    string
	ctype   string
	enc     string
	vary    bool
	loaded  time.Time
	// What a whole answer's head carries besides, formatted once.
	lastModified, length string
}

func (f *smallFile) reader() io.ReadSeeker { return bytes.NewReader(f.data) }

type smallFiles struct {
	mu    sync.RWMutex
	files map[smallKey]*smallFile
	bytes int
	// ttl and max are smallFileTTL and smallCacheMax, or what a test set.
	ttl time.Duration
	max int
}

// get returns the cached answer for path and acc, if it is fresh.
func (c *smallFiles) get(path string, acc encodings, now time.Time) *smallFile {
	c.mu.RLock()
	f := c.files[smallKey{path, acc}]
	c.mu.RUnlock()
	if f == nil || now.Sub(f.loaded) >= c.ttl {
		return nil
	}
	return f
}

// add reads file (open, described by fi) into the cache when it is small
// enough, and returns the entry; nil when the file is not kept.
func (c *smallFiles) add(path string, acc encodings, now time.Time, file *os.File, fi fs.FileInfo, name, tag, ctype, enc string, vary bool) *smallFile {
	size := fi.Size()
	if size > smallFileMax {
		return nil
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(file, data); err != nil {
		return nil // changed under us: serve it from the file (ServeContent seeks)
	}
	f := &smallFile{name: name, data: data, modTime: fi.ModTime(), etag: tag, ctype: ctype, enc: enc, vary: vary, loaded: now,
		length: strconv.Itoa(len(data))}
	if mt := fi.ModTime(); !mt.IsZero() && !mt.Equal(time.Unix(0, 0)) {
		f.lastModified = mt.UTC().Format(http.TimeFormat)
	}
	k := smallKey{path, acc}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.files == nil || c.bytes+len(data) > c.max {
		c.files, c.bytes = map[smallKey]*smallFile{}, 0
	}
	if old := c.files[k]; old != nil {
		c.bytes -= len(old.data)
	}
	c.files[k] = f
	c.bytes += len(data)
	return f
}
