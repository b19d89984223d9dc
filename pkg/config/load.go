package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

// Load reads, decodes and validates the file at path. On failure the error
// is an Errors listing every problem with its file and line, or wraps
// ErrNotFound.
func Load(path string) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	data, err := os.ReadFile(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w: create it, or name another with -c FILE", path, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, filepath.Dir(abs), data)
}

// Parse decodes data as if read from the file name, resolving relative paths
// against dir.
func Parse(name, dir string, data []byte) (*Config, error) {
	c := Default()
	c.File = name
	v := &validator{file: name, dir: dir, lines: strings.Split(string(data), "\n")}

	md, err := toml.Decode(string(data), c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			e := &Error{File: name, Line: pe.Position.Line, Msg: pe.Message}
			if pe.LastKey != "" {
				e.Key = pe.LastKey
			}
			return nil, Errors{e}
		}
		return nil, Errors{{File: name, Msg: strings.TrimPrefix(err.Error(), "toml: ")}}
	}

	for _, k := range md.Keys() {
		if looksSecret(k) {
			v.fail(k, secretAdvice(k))
		}
	}
	for _, k := range md.Undecoded() {
		if looksSecret(k) {
			continue // already reported, with better advice
		}
		v.fail(k, "unknown key: "+unknownAdvice(k))
	}
	v.checkPEM(data)
	c.validate(v)
	if len(v.errs) > 0 {
		sort.SliceStable(v.errs, func(i, j int) bool {
			a, b := v.errs[i], v.errs[j]
			if a.Line == 0 || b.Line == 0 {
				return a.Line != 0 && b.Line == 0
			}
			return a.Line < b.Line
		})
		return nil, v.errs
	}
	return c, nil
}

// secretWords are parts of key names that hold secrets rather than settings.
var secretWords = []string{"secret", "password", "passwd", "token", "api_key", "apikey", "private_key", "access_key"}

func looksSecret(k toml.Key) bool {
	if len(k) == 0 {
		return false
	}
	if k[0] == "app" && len(k) >= 2 && k[1] == "credentials" {
		return false // names of credentials, never values
	}
	last := strings.ToLower(k[len(k)-1])
	for _, w := range secretWords {
		if strings.Contains(last, w) {
			return true
		}
	}
	return false
}

func secretAdvice(k toml.Key) string {
	name := k[len(k)-1]
	env := strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
	cred := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
	return fmt.Sprintf("looks like a secret, and secrets do not belong in the config file (it is world-readable and ends up in backups): "+
		"put the value in a file readable only by root, say /etc/edged/credentials/%s, "+
		"pass it to the workers with LoadCredential=%s:/etc/edged/credentials/%s in a drop-in for workerd@.service, "+
		"and write [app.credentials] %s = %q here; the app then reads it from the environment as %s",
		cred, cred, cred, env, cred, env)
}

func unknownAdvice(k toml.Key) string {
	known := map[string][]string{
		"":        {"listen", "tls", "static", "app", "pool", "limits", "buffers", "proxy", "log"},
		"listen":  {"http", "https"},
		"tls":     {"cert", "key"},
		"static":  {"prefix", "root", "max_age", "index"},
		"app":     {"module", "python", "virtualenv", "directory", "env", "credentials", "script_name", "timeout"},
		"pool":    {"class", "threads", "workers", "socket_dir", "graceful_timeout", "max_requests"},
		"limits":  {"max_body", "max_header", "header_timeout", "body_timeout", "send_timeout", "idle_timeout", "queue_length", "queue_timeout"},
		"buffers": {"request_memory", "response_memory", "temp_dir"},
		"proxy":   {"trusted"},
		"log":     {"level", "format", "access"},
	}
	table := ""
	if len(k) > 1 {
		table = k[0]
	}
	keys, ok := known[table]
	if !ok || len(k) > 2 {
		return "remove it (see the README for every key)"
	}
	where := "at the top level"
	if table != "" {
		where = "in [" + table + "]"
	}
	return fmt.Sprintf("%q is not a setting %s; the keys there are %s", k[len(k)-1], where, strings.Join(keys, ", "))
}

// validator collects errors and resolves positions and paths.
type validator struct {
	file  string
	dir   string
	lines []string
	errs  Errors
}

func (v *validator) fail(key []string, msg string) {
	v.failf(key, strings.Join(key, "."), msg)
}

// failf reports msg for the key path, shown under the name display (which
// may carry an index such as static[1].root).
func (v *validator) failf(key []string, display, msg string) {
	v.errs = append(v.errs, &Error{File: v.file, Line: v.line(key), Key: display, Msg: msg})
}

func (v *validator) abs(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(v.dir, p)
}

// path resolves p and, when mustExist, checks that it exists.
func (v *validator) path(key []string, p, display string, mustExist bool) string {
	if p == "" {
		v.failf(key, display, "missing: give a path")
		return p
	}
	p = v.abs(p)
	if mustExist {
		if _, err := os.Stat(p); err != nil {
			v.failf(key, display, fmt.Sprintf("%q: %v", p, unwrapPathError(err)))
		}
	}
	return p
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func (v *validator) addr(display string, key []string, a string) {
	if err := splitHostPort(a); err != nil {
		v.failf(key, display, fmt.Sprintf("bad address %q: %v; write host:port, such as \"0.0.0.0:80\" or \"[::]:443\"", a, err))
	}
}

// checkPEM refuses private key material pasted into the file.
func (v *validator) checkPEM(data []byte) {
	for i, l := range v.lines {
		if strings.Contains(l, "-----BEGIN") && strings.Contains(l, "PRIVATE KEY") {
			v.errs = append(v.errs, &Error{File: v.file, Line: i + 1,
				Msg: "a private key is pasted into the config: keep keys in their own file, readable only by root, and give its path with [[tls]] key = \"/etc/edged/tls/site.key\" (under systemd, LoadCredential= hands it to edged)"})
			return
		}
	}
}

// line finds the line where key is set; 0 when it cannot be found. It reads
// the TOML the way people write it: [table] and [[table]] headers, key =
// value lines, and inline tables on one line.
func (v *validator) line(key []string) int {
	want := strings.Join(key, ".")
	table := ""
	best, bestLen := 0, -1
	for i, raw := range v.lines {
		l := strings.TrimSpace(raw)
		if l == "" || l[0] == '#' {
			continue
		}
		if l[0] == '[' {
			h := strings.Trim(strings.SplitN(l, "#", 2)[0], "[] \t")
			table = unquoteKey(h)
			if (want == table || strings.HasPrefix(want, table+".")) && len(table) > bestLen {
				best, bestLen = i+1, len(table)
			}
			continue
		}
		name, rest, ok := strings.Cut(l, "=")
		if !ok {
			continue
		}
		full := unquoteKey(strings.TrimSpace(name))
		if table != "" {
			full = table + "." + full
		}
		if full == want {
			return i + 1
		}
		if strings.HasPrefix(want, full+".") && strings.Contains(rest, "{") {
			return i + 1
		}
		if strings.HasPrefix(want, full) && len(full) > bestLen {
			best, bestLen = i+1, len(full)
		}
	}
	return best
}

func unquoteKey(k string) string {
	parts := strings.Split(k, ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return strings.Join(parts, ".")
}
