package config_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/edged/edged/pkg/config"
)

var update = flag.Bool("update", false, "rewrite the expected part of testdata/golden/*.txt")

// goldenSep separates the TOML input of a golden file from its expected
// output.
const goldenSep = "\n----\n"

// goldenCase is one testdata/golden/NAME.txt file.
type goldenCase struct {
	name  string // NAME
	path  string
	input []byte
	want  string
}

func readGolden(tb testing.TB) []goldenCase {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "golden", "*.txt"))
	if err != nil {
		tb.Fatal(err)
	}
	if len(paths) == 0 {
		tb.Fatal("no golden files in testdata/golden")
	}
	var cases []goldenCase
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		in, want, ok := bytes.Cut(data, []byte(goldenSep))
		if !ok {
			tb.Fatalf("%s: no %q line between the input and the expected output", p, strings.TrimSpace(goldenSep))
		}
		cases = append(cases, goldenCase{
			name:  strings.TrimSuffix(filepath.Base(p), ".txt"),
			path:  p,
			input: append(in, '\n'),
			want:  string(want),
		})
	}
	return cases
}

// makeTree lays out, under dir, every directory and file the golden
// configs refer to by relative path. Anything else does not exist.
func makeTree(tb testing.TB, dir string) {
	tb.Helper()
	for _, d := range []string{"static", "media", "app", "venv/bin", "tmp", "tls"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	for _, f := range []string{"tls/site.crt", "tls/site.key", "notadir", "errors/502.html", "staging.htpasswd"} {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(f)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x\n"), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

// result is what a golden file records for one input: the canonical dump of
// the loaded config, or the error text.
func result(name, dir string, input []byte) string {
	c, err := config.Parse(name+".toml", dir, input)
	var out string
	if err != nil {
		out = err.Error() + "\n"
	} else {
		out = dump(c, dir)
	}
	return strings.ReplaceAll(out, dir, "$DIR")
}

// dump prints the resolved values that matter, one key=value per line.
func dump(c *config.Config, dir string) string {
	var b strings.Builder
	p := func(k string, v any) { fmt.Fprintf(&b, "%s=%v\n", k, v) }
	rel := func(path string) string {
		if path == "" {
			return ""
		}
		if r, err := filepath.Rel(dir, path); err == nil && !strings.HasPrefix(r, "..") {
			return filepath.Join("$DIR", r)
		}
		return path
	}
	p("listen.http", strings.Join(c.Listen.HTTP, " "))
	p("listen.https", strings.Join(c.Listen.HTTPS, " "))
	for i, t := range c.TLS.Files {
		p(fmt.Sprintf("tls[%d]", i), rel(t.Cert)+" "+rel(t.Key))
	}
	if c.ACMEUsed() {
		a := c.ACME
		p("acme", fmt.Sprintf("names=%s ca=%s ca_root=%s email=%q renew_check=%s", strings.Join(c.ACMENames(), ","), a.CA, rel(a.CARoot), a.Email, a.RenewCheck))
	}
	for i, s := range c.Static {
		p(fmt.Sprintf("static[%d]", i), fmt.Sprintf("%s -> %s max_age=%s index=%q", s.Prefix, rel(s.Root), s.MaxAge, s.Index))
	}
	a := c.App
	p("app.module", a.Module)
	p("app.python", rel(a.Python))
	p("app.virtualenv", rel(a.Virtualenv))
	p("app.interpreter", rel(a.Interpreter()))
	p("app.directory", rel(a.Directory))
	p("app.script_name", a.ScriptName)
	p("app.timeout", a.Timeout)
	p("app.env", sortedMap(a.Env))
	p("app.credentials", sortedMap(a.Credentials))
	p("pool.class", c.Pool.Class)
	p("pool.threads", c.Pool.Threads)
	p("pool.connections", c.Pool.Connections)
	p("pool.workers", c.Pool.Workers)
	p("pool.socket_dir", rel(c.Pool.SocketDir))
	p("pool.graceful_timeout", c.Pool.GracefulTimeout)
	p("pool.max_requests", c.Pool.MaxRequests)
	l := c.Limits
	p("limits.max_body", l.MaxBody.String())
	p("limits.max_header", l.MaxHeader.String())
	p("limits.header_timeout", l.HeaderTimeout.String())
	p("limits.body_timeout", l.BodyTimeout.String())
	p("limits.send_timeout", l.SendTimeout.String())
	p("limits.idle_timeout", l.IdleTimeout.String())
	p("limits.queue_length", l.QueueLength)
	p("limits.queue_timeout", l.QueueTimeout.String())
	p("limits.rate", c.Limits.Rate.String())
	p("limits.burst", c.Limits.Burst)
	p("limits.connections_per_client", c.Limits.ConnectionsPerClient)
	p("buffers.request_memory", c.Buffers.RequestMemory.String())
	p("buffers.response_memory", c.Buffers.ResponseMemory.String())
	p("buffers.response_max", c.Buffers.ResponseMax.String())
	p("buffers.temp_dir", rel(c.Buffers.TempDir))
	nets := make([]string, len(c.Proxy.Nets))
	for i, n := range c.Proxy.Nets {
		nets[i] = n.String()
	}
	p("proxy.nets", strings.Join(nets, " "))
	p("log", fmt.Sprintf("level=%s format=%s access=%t", c.Log.Level, c.Log.Format, c.Log.Access))
	p("compress", fmt.Sprintf("enabled=%t types=%s min_size=%s gzip_level=%d zstd_level=%d", c.Compress.Enabled, strings.Join(c.Compress.Types, ","), c.Compress.MinSize, c.Compress.GzipLevel, c.Compress.ZstdLevel))
	p("metrics.listen", c.Metrics.Listen)
	if len(c.SiteBlocks) > 0 {
		dumpSites(p, rel, c)
	}
	return b.String()
}

// dumpSites prints what the sites resolved to, when the file has any
// [[site]].
func dumpSites(p func(string, any), rel func(string) string, c *config.Config) {
	for _, s := range c.Sites {
		k := "site " + s.Name
		p(k, fmt.Sprintf("names=%s default=%t https=%s canonical=%q logged=%t", strings.Join(s.Names, ","), s.Default, s.HTTPS, s.Canonical, s.Logged()))
		p(k+" app", fmt.Sprintf("%s dir=%s timeout=%s", s.App.Module, rel(s.App.Directory), s.App.Timeout))
		p(k+" pool", fmt.Sprintf("%s workers=%d socket=%s graceful=%s", s.Pool.Class, s.Pool.Workers, rel(s.Pool.Socket()), s.Pool.GracefulTimeout))
		for _, st := range s.Static {
			p(k+" static", st.Prefix+" -> "+rel(st.Root))
		}
		for _, t := range s.TLS.Files {
			p(k+" tls", rel(t.Cert)+" "+rel(t.Key))
		}
		if s.TLS.ACME {
			p(k+" tls", "acme")
		}
		l := s.Limits
		p(k+" limits", fmt.Sprintf("max_body=%s body_timeout=%s rate=%s burst=%d queue_length=%d", l.MaxBody, l.BodyTimeout, l.Rate, l.Burst, l.QueueLength))
		if len(s.Headers) > 0 {
			p(k+" headers", sortedMap(s.Headers)+" override="+strings.Join(s.OverrideHeaders, ","))
		}
		for code, f := range s.ErrorPages {
			p(k+" error "+fmt.Sprint(code), rel(f))
		}
		for _, r := range s.Paths {
			p(k+" path", fmt.Sprintf("prefix=%q pattern=%q methods=%s rate=%s burst=%d max_body=%s allow=%v deny=%v auth=%q file=%s logged=%t",
				r.Prefix, r.Pattern, strings.Join(r.Methods, ","), r.Rate, r.Burst, r.MaxBody, r.AllowNets, r.DenyNets, r.AuthBasic, rel(r.AuthBasicUserFile), r.Logged()))
		}
	}
}

func sortedMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + ":" + m[k]
	}
	return strings.Join(parts, " ")
}

// TestGolden loads each testdata/golden/NAME.txt input as NAME.toml and
// compares the dump or error with the file's expected part. With -update it
// rewrites the expected part instead.
func TestGolden(t *testing.T) {
	for _, gc := range readGolden(t) {
		t.Run(gc.name, func(t *testing.T) {
			dir := t.TempDir()
			makeTree(t, dir)
			got := result(gc.name, dir, gc.input)
			if *update {
				in := bytes.TrimSuffix(gc.input, []byte("\n"))
				out := append(append(in, goldenSep...), got...)
				if err := os.WriteFile(gc.path, out, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != gc.want {
				t.Errorf("%s: output differs (go test ./pkg/config -update rewrites it)\n--- got\n%s--- want\n%s", gc.path, got, gc.want)
			}
		})
	}
}

// TestErrorsShape checks what every failing golden case must satisfy
// whatever its text: an Errors whose elements all name the file, in line
// order with the lineless ones last.
func TestErrorsShape(t *testing.T) {
	for _, gc := range readGolden(t) {
		dir := t.TempDir()
		makeTree(t, dir)
		_, err := config.Parse(gc.name+".toml", dir, gc.input)
		if err == nil {
			continue
		}
		var es config.Errors
		if !errors.As(err, &es) {
			t.Errorf("%s: error is %T, not config.Errors: %v", gc.name, err, err)
			continue
		}
		last := 0
		for _, e := range es {
			if e.File != gc.name+".toml" {
				t.Errorf("%s: error %q names file %q", gc.name, e, e.File)
			}
			if e.Line != 0 && e.Line < last || last == -1 && e.Line != 0 {
				t.Errorf("%s: errors not in line order: %v", gc.name, err)
			}
			if e.Line == 0 {
				last = -1
			} else {
				last = e.Line
			}
			if e.Line > bytes.Count(gc.input, []byte("\n"))+1 {
				t.Errorf("%s: error %q is past the last line", gc.name, e)
			}
		}
	}
}

func TestLoadNotFound(t *testing.T) {
	_, err := config.Load(filepath.Join(t.TempDir(), "missing.toml"))
	if !errors.Is(err, config.ErrNotFound) {
		t.Fatalf("Load(missing) = %v, want an error wrapping ErrNotFound", err)
	}
}

// TestLoadRelative checks that Load resolves relative paths against the
// file's own directory, not the working directory.
func TestLoadRelative(t *testing.T) {
	dir := t.TempDir()
	makeTree(t, dir)
	file := filepath.Join(dir, "edged.toml")
	src := "[app]\nmodule = \"myapp.wsgi:application\"\ndirectory = \"app\"\n[[static]]\nprefix = \"/static/\"\nroot = \"static\"\n"
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "app"); c.App.Directory != want {
		t.Errorf("app.directory = %q, want %q", c.App.Directory, want)
	}
	if want := filepath.Join(dir, "static"); c.Static[0].Root != want {
		t.Errorf("static[0].root = %q, want %q", c.Static[0].Root, want)
	}
}
