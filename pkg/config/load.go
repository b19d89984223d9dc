package config

import (
	"encoding"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
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
	return parse(name, dir, data, true)
}

// LoadShape is Load without looking at the files the config names (the
// app's directory, static roots, certificates, user files): what a
// program that only needs the sites' names, pools and limits reads, where
// those files may not be mounted yet (a generator at boot) or readable
// (edgectl as a member of edgeadm).
func LoadShape(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w: create it, or name another with -c FILE", path, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	abs, _ := filepath.Abs(path)
	return ParseShape(path, filepath.Dir(abs), data)
}

// ParseShape is Parse without looking at the files the config names.
func ParseShape(name, dir string, data []byte) (*Config, error) {
	return parse(name, dir, data, false)
}

func parse(name, dir string, data []byte, files bool) (*Config, error) {
	c := Default()
	c.File = name
	v := &validator{file: name, dir: dir, lines: strings.Split(string(data), "\n"), noFiles: !files}

	var doc map[string]any
	if _, err := toml.Decode(string(data), &doc); err == nil {
		// A [[site]] starts from the defaults of its app and pool: the
		// decoder fills elements that are already there.
		if sites, ok := doc["site"].([]map[string]any); ok {
			c.SiteBlocks = make([]Site, len(sites))
			for i := range c.SiteBlocks {
				c.SiteBlocks[i] = newSiteBlock()
			}
		}
	}
	md, err := toml.Decode(string(data), c)
	if err != nil {
		return nil, Errors{v.decodeError(err)}
	}
	refused := map[string]bool{}
	secrets(doc, func(k toml.Key, why string) {
		if k[0] == "tls" || len(k) > 1 && k[0] == "site" && k[1] == "tls" {
			return // paths; a key pasted there is checkPEM's
		}
		if !refused[k.String()] {
			refused[k.String()] = true
			v.fail(k, secretAdvice(k, why))
			v.errs[len(v.errs)-1].Err = &SecretError{Key: strings.Join(k, "."), Why: why}
			v.pem = v.pem || why == whyPrivateKey
		}
	})
	unknown := map[string]bool{}
	for _, k := range md.Undecoded() {
		unknown[k.String()] = true
	}
	for _, k := range md.Undecoded() {
		if refused[k.String()] {
			continue // already reported, with better advice
		}
		if underUnknown(k, unknown) {
			continue // a key of a misspelt table: the table is reported
		}
		if k[0] == "tls" || len(k) > 1 && k[0] == "site" && k[1] == "tls" {
			continue // TLSList checks its keys itself
		}
		v.unknown(k)
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

// unknown reports the key k that nothing decodes, at each place it is
// set (once per element of an array of tables).
func (v *validator) unknown(k toml.Key) {
	msg := "unknown key: " + unknownAdvice(k)
	full := k.String()
	found := false
	for _, e := range v.scan() {
		if e.full == full && (!found || e.elem.indexed()) {
			v.add(e.line, v.display(k, e.elem), msg)
			found = true
			if !e.elem.indexed() {
				break
			}
		}
	}
	if !found {
		v.fail(k, msg)
	}
}

// underUnknown reports whether a table holding k is itself unknown.
func underUnknown(k toml.Key, unknown map[string]bool) bool {
	for i := 1; i < len(k); i++ {
		if unknown[k[:i].String()] {
			return true
		}
	}
	return false
}

// unquotedUnit is a line such as `max_body = 10mb`: a number with a unit
// and no quotes.
var unquotedUnit = regexp.MustCompile(`^\s*([A-Za-z0-9_-]+)\s*=\s*([0-9][0-9.]*[A-Za-zµ]+)\s*(#.*)?$`)

// decodeError turns an error from toml.Decode into an Error with the line
// and key. The library reports a bad value through a ParseError, but a value
// of the wrong type through a plain error that has the line and key only in
// its text, and with Go type names.
func (v *validator) decodeError(err error) *Error {
	e := &Error{File: v.file}
	var pe toml.ParseError
	if errors.As(err, &pe) {
		e.Line, e.Key, e.Msg = pe.Position.Line, pe.LastKey, pe.Message
		if l := pe.Position.Line; l > 0 && l <= len(v.lines) {
			if m := unquotedUnit.FindStringSubmatch(v.lines[l-1]); m != nil {
				// max_body = 10m: TOML reads a number, then stumbles.
				if e.Key != "" {
					e.Key += "."
				}
				e.Key += m[1]
				e.Msg = fmt.Sprintf("%s is a size or a duration, which TOML takes as a string: quote it, %s = %q", m[2], m[1], m[2])
			}
		}
	} else {
		e.Line, e.Key, e.Msg = splitDecodeMsg(err.Error())
		e.Msg = typeAdvice(e.Key, e.Msg)
	}
	if e.Key != "" {
		if l, name := v.elementLine(strings.Split(e.Key, "."), err); l > 0 {
			// Named as the validation names an element: static[1].max_age.
			e.Line, e.Key = l, name
		} else if e.Line == 0 {
			e.Line = v.line(strings.Split(e.Key, "."), nil)
		}
	}
	return e
}

var decodeMsgRE = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key ("(?:[^"\\]|\\.)*")\): `)

// splitDecodeMsg splits "toml: line 6 (last key "pool.workers"): msg".
func splitDecodeMsg(s string) (line int, key, msg string) {
	m := decodeMsgRE.FindStringSubmatch(s)
	if m == nil {
		return 0, "", strings.TrimPrefix(s, "toml: ")
	}
	line, _ = strconv.Atoi(m[1])
	key, err := strconv.Unquote(m[2])
	if err != nil {
		key = ""
	}
	return line, key, s[len(m[0]):]
}

var (
	badTypeRE  = regexp.MustCompile(`^incompatible types: TOML value has type (.+); destination has type (.+)$`)
	mismatchRE = regexp.MustCompile(`^type mismatch for .+: expected table but found (.+)$`)
)

// typeAdvice rewrites the library's type errors in TOML terms.
func typeAdvice(key, msg string) string {
	var have, want string
	if m := badTypeRE.FindStringSubmatch(msg); m != nil {
		have, want = m[1], m[2]
	} else if m := mismatchRE.FindStringSubmatch(msg); m != nil {
		have, want = m[1], "table"
	} else {
		return msg
	}
	if have == "map[string]any" && want == "slice" && key != "" && !strings.Contains(key, ".") {
		return fmt.Sprintf("is a list of tables: write each one under a [[%s]] header (two brackets)", key)
	}
	w, ok := map[string]string{
		"integer": "an integer", "float": "a number", "boolean": "true or false", "string": "a string",
		"primitive (string-like)": "a string", "slice": "an array", "map": "a table", "table": "a table",
	}[want]
	if !ok {
		return msg
	}
	return fmt.Sprintf("must be %s, not %s", w, goTypeName(have))
}

// elementLine finds the line of key when its table is in an array of
// tables ([[static]], [[site]], [[site.path]]): the library reports the
// line of the key's last occurrence, whichever element held the bad value.
// It decodes each occurrence alone, under the headers of its table, and
// returns the line of the first that fails, with the key named as the
// validation names it (site[1].pool.workers); 0 when none does.
func (v *validator) elementLine(key []string, decodeErr error) (line int, display string) {
	full := strings.Join(key, ".")
	if !inArray(full) {
		return 0, ""
	}
	want := errorText(decodeErr)
	for _, e := range v.scan() {
		if e.header || e.full != full {
			continue
		}
		src := headers(e.table) + v.lines[e.line-1]
		if _, err := toml.Decode(src, Default()); err != nil && errorText(err) == want {
			return e.line, v.display(key, e.elem)
		}
	}
	return 0, ""
}

// arrayTables are the tables written as [[name]], by their full key.
var arrayTables = map[string]bool{"static": true, "tls": true, "site": true, "site.static": true, "site.tls": true, "site.path": true}

// inArray says a key lies in an element of an array of tables.
func inArray(full string) bool {
	for t := range arrayTables {
		if strings.HasPrefix(full, t+".") {
			return true
		}
	}
	return false
}

// headers are the header lines that open table: [[site]] then
// [site.app] for "site.app".
func headers(table string) string {
	if table == "" {
		return ""
	}
	var b strings.Builder
	parts := strings.Split(table, ".")
	for i := range parts {
		t := strings.Join(parts[:i+1], ".")
		if arrayTables[t] {
			b.WriteString("[[" + t + "]]\n")
		} else if i == len(parts)-1 {
			b.WriteString("[" + t + "]\n")
		}
	}
	return b.String()
}

// display names key as the validation does, with the index of each array
// element it lies in: site[1].path[0].rate.
func (v *validator) display(key []string, at elems) string {
	var b strings.Builder
	for i, k := range key {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(k)
		if t := strings.Join(key[:i+1], "."); arrayTables[t] && at[t] >= 0 && i < len(key)-1 {
			fmt.Fprintf(&b, "[%d]", at[t])
		}
	}
	return b.String()
}

// errorText is a decode error's message without its position.
func errorText(err error) string {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return pe.Message
	}
	_, _, msg := splitDecodeMsg(err.Error())
	return msg
}

// knownKeys lists the keys of each table, "" for the top level, from
// Config's struct tags: a key added to a struct is known at once.
func knownKeys() map[string][]string {
	known := map[string][]string{}
	var walk func(table string, t reflect.Type)
	walk = func(table string, t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name := strings.Split(f.Tag.Get("toml"), ",")[0]
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			known[table] = append(known[table], name)
			ft := f.Type
			if ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			// A table of its own: a struct that is not a value type
			// (Size, Duration and the like decode from strings).
			if ft.Kind() == reflect.Struct && !reflect.PointerTo(ft).Implements(reflect.TypeFor[encoding.TextUnmarshaler]()) {
				sub := name
				if table != "" {
					sub = table + "." + name
				}
				walk(sub, ft)
			}
		}
	}
	walk("", reflect.TypeFor[Config]())
	return known
}

func unknownAdvice(k toml.Key) string {
	known := knownKeys()
	table := strings.Join(k[:len(k)-1], ".")
	keys, ok := known[table]
	if !ok {
		return "remove it (see the README for every key)"
	}
	where := "at the top level"
	if table != "" {
		where = "in [" + table + "]"
		if arrayTables[table] {
			where = "in [[" + table + "]]"
		}
	}
	if table == "site.limits" {
		switch k[len(k)-1] {
		case "max_header", "header_timeout", "idle_timeout":
			return fmt.Sprintf("%q is a limit of the connection, met before its host name is known: set it in the top-level [limits]", k[len(k)-1])
		}
	}
	return fmt.Sprintf("%q is not a setting %s; the keys there are %s", k[len(k)-1], where, strings.Join(keys, ", "))
}

// validator collects errors and resolves positions and paths.
type validator struct {
	file  string
	dir   string
	lines []string
	errs  Errors
	// pem is set once checkPEM has reported a pasted private key.
	pem bool
	// noFiles: paths are resolved, never looked at (ParseShape).
	noFiles bool
	// entries is the file as line reads it, made on first use.
	entries []entry
}

func (v *validator) fail(key []string, msg string) {
	v.failf(key, strings.Join(key, "."), msg)
}

// failf reports msg for the key path, shown under the name display (which
// may carry an index such as static[1].root). When display indexes an array
// of tables that way, the line is looked for in that element.
func (v *validator) failf(key []string, display, msg string) {
	v.add(v.lineOf(key, display), display, msg)
}

func (v *validator) add(line int, display, msg string) {
	v.errs = append(v.errs, &Error{File: v.file, Line: line, Key: display, Msg: msg})
}

func (v *validator) lineOf(key []string, display string) int {
	if at := indexes(display); len(at) > 0 {
		if l := v.line(key, at); l > 0 {
			return l
		}
	}
	return v.line(key, nil)
}

// indexes reads the array elements a display name points into:
// "site[1].path[0].rate" gives site: 1, site.path: 0.
func indexes(display string) elems {
	var at elems
	table := ""
	for _, part := range strings.Split(display, ".") {
		name, idx, ok := strings.Cut(part, "[")
		if table != "" {
			table += "."
		}
		table += name
		if !ok || !arrayTables[table] {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSuffix(idx, "]"))
		if err != nil {
			continue
		}
		if at == nil {
			at = elems{}
		}
		at[table] = n
	}
	return at
}

// failElem reports msg for the element val of the array at key, on the
// line that holds val when the array spans several lines.
func (v *validator) failElem(key []string, display, val, msg string) {
	l := v.lineOf(key, display)
	if l > 0 {
		l = v.valueLine(l, val)
	}
	v.add(l, display, msg)
}

// valueLine returns the line, from line start on, that holds the string
// val, for an array written one element per line; start when none does.
func (v *validator) valueLine(start int, val string) int {
	for i := start - 1; i < len(v.lines); i++ {
		l := v.lines[i]
		if strings.Contains(l, strconv.Quote(val)) || strings.Contains(l, "'"+val+"'") {
			return i + 1
		}
		t := strings.TrimSpace(l)
		if i > start-1 && (strings.HasPrefix(t, "]") || strings.HasPrefix(t, "[") || strings.Contains(t, "=")) {
			break
		}
	}
	return start
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
	if strings.Contains(p, "-----BEGIN") {
		// Never echo it: it may be a private key. checkPEM has already
		// reported a pasted private key.
		if !v.pem {
			v.failf(key, display, "is PEM data, not a path: save it in its own file and give that file's path")
		}
		return p
	}
	p = v.abs(p)
	if mustExist && !v.noFiles {
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
		v.failElem(key, display, a, fmt.Sprintf("bad address %q: %v; write host:port, such as \"0.0.0.0:80\" or \"[::]:443\"", a, err))
	}
}

// checkPEM refuses private key material pasted into the file.
func (v *validator) checkPEM(data []byte) {
	if v.pem {
		return // refused under its key
	}
	for i, l := range v.lines {
		if strings.Contains(l, "-----BEGIN") && strings.Contains(l, "PRIVATE KEY") {
			v.errs = append(v.errs, &Error{File: v.file, Line: i + 1,
				Msg: "a private key is pasted into the config: keep keys in their own file, readable only by root, and give its path with [[tls]] key = \"/etc/edged/tls/site.key\" (under systemd, LoadCredential= hands it to edged)",
				Err: &SecretError{Why: whyPrivateKey}})
			v.pem = true
			return
		}
	}
}

// line finds the line where key is set; 0 when it cannot be found. It reads
// the TOML the way people write it: [table] and [[table]] headers, key =
// value lines, and inline tables on one line. When at is set, only lines in
// those elements of arrays of tables are searched ({"site": 1, "site.path":
// 0}); else every element, and the first match is taken.
func (v *validator) line(key []string, at elems) int {
	if len(key) == 0 {
		return 0
	}
	want := strings.Join(key, ".")
	best, bestLen := 0, -1
	for _, e := range v.scan() {
		if !e.elem.within(at) {
			continue
		}
		if e.header {
			if (want == e.full || strings.HasPrefix(want, e.full+".")) && len(e.full) > bestLen {
				best, bestLen = e.line, len(e.full)
			}
			continue
		}
		if e.full == want {
			return e.line
		}
		if strings.HasPrefix(want, e.full+".") {
			if e.brace {
				return e.line
			}
			if len(e.full) > bestLen {
				best, bestLen = e.line, len(e.full)
			}
		}
	}
	return best
}

// elems maps each array of tables to the index of its element that is
// current on a line of the file; -1 before the first (or, for a nested
// array, before the first in the current outer element).
type elems map[string]int

// within says a line in e lies in every element of at.
func (e elems) within(at elems) bool {
	for t, n := range at {
		if e[t] != n {
			return false
		}
	}
	return true
}

// indexed says the line lies in some element of an array of tables.
func (e elems) indexed() bool {
	for _, n := range e {
		if n >= 0 {
			return true
		}
	}
	return false
}

// entry is one header or key = value line of the file, as line sees it.
type entry struct {
	line   int
	header bool   // a [table] or [[table]] line
	table  string // the table the line is in (for a header, the one it opens)
	full   string // the table, or the key with its table
	brace  bool   // the value holds an inline table
	elem   elems
}

// scan splits the file into entries once.
func (v *validator) scan() []entry {
	if v.entries != nil {
		return v.entries
	}
	v.entries = []entry{}
	table := ""
	elem := elems{}
	for name := range arrayTables {
		elem[name] = -1
	}
	for i, raw := range v.lines {
		l := strings.TrimSpace(raw)
		if l == "" || l[0] == '#' {
			continue
		}
		if l[0] == '[' {
			h := strings.Trim(strings.SplitN(l, "#", 2)[0], "[] \t")
			table = unquoteKey(h)
			if _, ok := elem[table]; ok && strings.HasPrefix(l, "[[") {
				elem = maps.Clone(elem)
				elem[table]++
				for t := range elem {
					if strings.HasPrefix(t, table+".") {
						elem[t] = -1 // a new outer element starts its inner arrays again
					}
				}
			}
			v.entries = append(v.entries, entry{line: i + 1, header: true, table: table, full: table, elem: elem})
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
		v.entries = append(v.entries, entry{line: i + 1, table: table, full: full, brace: strings.Contains(rest, "{"), elem: elem})
	}
	return v.entries
}

func unquoteKey(k string) string {
	parts := strings.Split(k, ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return strings.Join(parts, ".")
}

// scope is where a table's keys lie in the file: the top level, or an
// element of an array of tables (site[1], site[1].path[0]). Validation
// reports through it, so one check serves a table wherever it is.
type scope struct {
	v       *validator
	key     []string // the table's key path, without indexes
	display string   // the same with indexes, "site[1]"; "" at the top
}

// at is key under the scope: its full key path and its display name.
func (sc scope) at(key []string) ([]string, string) {
	full := append(append([]string{}, sc.key...), key...)
	d := strings.Join(key, ".")
	if sc.display != "" {
		d = sc.display + "." + d
	}
	return full, d
}

func (sc scope) fail(key []string, msg string) {
	k, d := sc.at(key)
	sc.v.failf(k, d, msg)
}

func (sc scope) failElem(key []string, val, msg string) {
	k, d := sc.at(key)
	sc.v.failElem(k, d, val, msg)
}

// elem is the scope of the ith element of the array of tables name.
func (sc scope) elem(name string, i int) scope {
	k, d := sc.at([]string{name})
	return scope{v: sc.v, key: k, display: fmt.Sprintf("%s[%d]", d, i)}
}

// path resolves and checks a path as validator.path does.
func (sc scope) path(key []string, p string, mustExist bool) string {
	k, d := sc.at(key)
	return sc.v.path(k, p, d, mustExist)
}
