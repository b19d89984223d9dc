package edge

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/edged/edged/pkg/config"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// compressor compresses app responses (the [compress] table), chosen
// from the client's Accept-Encoding. klauspost/compress does it: the same
// formats as the standard library's gzip, faster, and zstd, which the
// standard library lacks.
type compressor struct {
	cfg   config.Compress
	gzips sync.Pool // *gzip.Writer at cfg.GzipLevel
	zstd  *zstd.Encoder
}

func newCompressor(cfg config.Compress) (*compressor, error) {
	if !cfg.Enabled {
		return nil, nil
	}
	c := &compressor{cfg: cfg}
	c.gzips.New = func() any {
		w, _ := gzip.NewWriterLevel(nil, cfg.GzipLevel)
		return w
	}
	z, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(cfg.ZstdLevel)),
		zstd.WithEncoderConcurrency(1), zstd.WithZeroFrames(true))
	if err != nil {
		return nil, err
	}
	c.zstd = z
	return c, nil
}

// eligible says whether an answer of this type, size and headers is one
// to compress at all (then it varies with Accept-Encoding).
func (c *compressor) eligible(status int, h http.Header, size int64) bool {
	if c == nil || status != http.StatusOK || size < int64(c.cfg.MinSize) {
		return false
	}
	if len(h["Content-Encoding"]) > 0 || len(h["Content-Range"]) > 0 {
		return false
	}
	for _, v := range h["Cache-Control"] {
		if strings.Contains(strings.ToLower(v), "no-transform") {
			return false
		}
	}
	return c.typeListed(h.Get("Content-Type"))
}

func (c *compressor) typeListed(ct string) bool {
	base, _, _ := strings.Cut(ct, ";")
	base = strings.ToLower(strings.TrimSpace(base))
	typ, _, _ := strings.Cut(base, "/")
	for _, t := range c.cfg.Types {
		if t == base || strings.HasSuffix(t, "/*") && t[:len(t)-2] == typ {
			return true
		}
	}
	return false
}

// compress returns body in encoding enc ("gzip" or "zstd").
func (c *compressor) compress(enc string, body []byte) []byte {
	if enc == "zstd" {
		return c.zstd.EncodeAll(body, make([]byte, 0, len(body)/3+64))
	}
	var out bytes.Buffer
	out.Grow(len(body)/3 + 64)
	w := c.gzips.Get().(*gzip.Writer)
	w.Reset(&out)
	w.Write(body)
	w.Close()
	c.gzips.Put(w)
	return out.Bytes()
}

// chooseEncoding picks zstd or gzip from Accept-Encoding values by their
// q-values (RFC 9110 12.5.3); on a tie zstd, which is faster and smaller.
// "" means neither is acceptable.
func chooseEncoding(values []string) string {
	var gz, zs, star float64 = -1, -1, -1
	for _, v := range values {
		for v != "" {
			var item string
			item, v, _ = strings.Cut(v, ",")
			name, params, _ := strings.Cut(item, ";")
			q := 1.0
			for params != "" {
				var p string
				p, params, _ = strings.Cut(params, ";")
				k, val, _ := strings.Cut(p, "=")
				if strings.EqualFold(strings.TrimSpace(k), "q") {
					f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
					if err != nil || f < 0 || f > 1 {
						f = 0
					}
					q = f
				}
			}
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "gzip", "x-gzip":
				gz = q
			case "zstd":
				zs = q
			case "*":
				star = q
			}
		}
	}
	if gz < 0 {
		gz = star
	}
	if zs < 0 {
		zs = star
	}
	switch {
	case zs > 0 && zs >= gz:
		return "zstd"
	case gz > 0:
		return "gzip"
	}
	return ""
}

// weak makes an ETag weak: the compressed bytes are not the app's.
func weak(tag string) string {
	if tag == "" || strings.HasPrefix(tag, "W/") {
		return tag
	}
	return "W/" + tag
}
