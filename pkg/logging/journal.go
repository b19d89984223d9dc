package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/coreos/go-systemd/v22/journal"
)

// Journal writes events to the systemd journal as native entries: each
// JSON line zerolog writes becomes one entry whose PRIORITY comes from its
// level, whose MESSAGE is a short line for a human, and whose every field
// is a journal field of its own, upper-cased (status → STATUS), so that
// `journalctl -p err` and `journalctl STATUS=502` work. A value is sent as
// journald's binary-safe form when it holds a newline, so that no value a
// client sent (a path, a user agent) can forge a field or an entry.
//
// A line the journal does not take (its socket gone, its queue full, or
// an entry it refuses) goes to Fallback as the JSON line it was: sending
// never waits for journald. Fallback may (a pipe): edged puts the Journal
// behind an Async, as New does, so that the code that logs never waits.
type Journal struct {
	// Fallback takes the lines the journal did not.
	Fallback io.Writer
	// Identifier is SYSLOG_IDENTIFIER: the program's name.
	Identifier string
	// send is journal.Send, or a test's stand-in: the slow way, for an
	// event scanFlat does not take, or an entry too big for a datagram.
	send func(message string, priority journal.Priority, vars map[string]string) error
	// datagrams sends entries of the native protocol, in order, and says
	// how many went; err is why the next did not (errTooBig: too big for
	// a datagram). nil: every entry goes through send.
	datagrams func(bufs [][]byte) (int, error)
	failed    atomic.Uint64

	mu    sync.Mutex // one Write at a time: the buffers below are shared
	buf   []byte     // the entries of one Write
	bufs  [][]byte   // each entry, in buf
	lines [][]byte   // the line each came from
	pairs []pair
	sock  batchSocket
}

// NewJournal returns a Journal for this program, falling back to w.
func NewJournal(w io.Writer) *Journal {
	j := &Journal{Fallback: w, Identifier: filepath.Base(os.Args[0]), send: journal.Send}
	j.sock.fd = -1
	j.datagrams = j.sock.send
	return j
}

// errTooBig says an entry does not fit a datagram; errFull, that
// journald's queue is full.
var (
	errTooBig = errors.New("entry too big for a datagram")
	errFull   = errors.New("the journal's queue is full")
)

// Limits on what one entry carries: journald takes more, but an event
// with more than this is not one a human reads, and the bounds keep a
// flood of huge values (a client's 8 KiB header, many times) from
// filling the journal.
const (
	maxFields     = 64
	maxFieldValue = 64 << 10
	maxFieldName  = 64
)

// Failed is how many lines went to Fallback.
func (j *Journal) Failed() uint64 { return j.failed.Load() }

// Unwrap is the fallback writer.
func (j *Journal) Unwrap() io.Writer { return j.Fallback }

// Write sends each line of p, a JSON event a line, as an entry. The
// entries of the lines an Async gathered go out together, in one system
// call where the journal takes them all.
func (j *Journal) Write(p []byte) (int, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for rest := p; len(rest) > 0; {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		ok, start := false, len(j.buf)
		if j.datagrams != nil {
			if j.pairs, ok = scanFlat(line, j.pairs[:0]); ok {
				j.buf, ok = appendEntry(j.buf, j.pairs, j.Identifier)
			}
			clear(j.pairs) // no strings kept alive past the line
		}
		if ok {
			// A slice of buf stays whole when buf grows: append copies
			// to a new array and leaves the old one as it was.
			j.bufs = append(j.bufs, j.buf[start:])
			j.lines = append(j.lines, line)
			continue
		}
		j.flush() // the entries before it go first
		j.slow(line)
	}
	j.flush()
	return len(p), nil
}

// flush sends the entries gathered; one the journal does not take goes
// the slow way (too big for a datagram) or to Fallback.
func (j *Journal) flush() {
	for i := 0; i < len(j.bufs); {
		n, err := j.datagrams(j.bufs[i:])
		i += n
		if err == nil {
			if n == 0 {
				break // a sender that sends nothing and says nothing
			}
			continue
		}
		if i >= len(j.bufs) {
			break
		}
		if err == errTooBig {
			j.slow(j.lines[i])
		} else {
			j.fallback(j.lines[i])
		}
		i++
	}
	clear(j.bufs)
	clear(j.lines)
	j.buf, j.lines, j.bufs = j.buf[:0], j.lines[:0], j.bufs[:0]
}

// slow sends line through Entry and send, or to Fallback.
func (j *Journal) slow(line []byte) {
	msg, prio, vars, err := Entry(line)
	if err == nil {
		if j.Identifier != "" {
			vars["SYSLOG_IDENTIFIER"] = j.Identifier
		}
		err = j.send(msg, prio, vars)
	}
	if err != nil {
		j.fallback(line)
	}
}

// fallback writes line, which the journal did not take, to Fallback.
func (j *Journal) fallback(line []byte) {
	j.failed.Add(1)
	j.Fallback.Write(append(line[:len(line):len(line)], '\n'))
}

// Entry is the journal entry of one JSON event: its MESSAGE, PRIORITY
// and other fields.
func Entry(line []byte) (string, journal.Priority, map[string]string, error) {
	var evt map[string]any
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	if err := d.Decode(&evt); err != nil {
		return "", 0, nil, fmt.Errorf("not a JSON event: %w", err)
	}
	if len(bytes.TrimSpace(line[d.InputOffset():])) > 0 {
		return "", 0, nil, errors.New("not one JSON event: more follows the object")
	}
	vars := make(map[string]string, len(evt))
	keys := make([]string, 0, len(evt))
	for k := range evt {
		keys = append(keys, k)
	}
	sort.Strings(keys) // the same fields kept when there are too many
	for _, k := range keys {
		switch k {
		case "level", "message", "time":
			continue // PRIORITY, MESSAGE; the journal has its own time
		}
		if s, ok := evt[k].(string); ok && k == CallerField {
			if file, line, ok := codeLocation(s); ok {
				if len(vars)+2 <= maxFields {
					vars["CODE_FILE"], vars["CODE_LINE"] = file, line
				}
				continue
			}
		}
		name := FieldName(k)
		if name == "" || len(vars) >= maxFields {
			continue
		}
		if v, ok := fieldValue(evt[k]); ok {
			vars[name] = v
		}
	}
	return message(mapFields(evt)), priority(mapFields(evt)), vars, nil
}

// CallerField is the key of an event's place in the code (zerolog's
// Caller: "file:line"), sent as CODE_FILE and CODE_LINE. edged and
// workerd give it to the errors of their own code, where the place says
// something; an access event or an app's traceback has none.
const CallerField = "caller"

// codeLocation splits a caller's "file:line"; ok is false for anything
// else, which stays a field of its own.
func codeLocation(v string) (file, line string, ok bool) {
	if len(v) > maxFieldValue {
		return "", "", false // as the fast way sees it: cut, and no place
	}
	i := strings.LastIndexByte(v, ':')
	if i <= 0 || i == len(v)-1 || len(v)-i > 10 {
		return "", "", false
	}
	for _, c := range v[i+1:] {
		if c < '0' || c > '9' {
			return "", "", false
		}
	}
	if strings.ContainsAny(v[:i], "\n\x00") {
		return "", "", false
	}
	return v[:i], v[i+1:], true
}

// FieldName is the journal field of an event's key: upper case, what is
// not a letter, digit or underscore made an underscore, no leading
// underscore (those are journald's own), at most 64 bytes, EVENT_ before
// the names the entry or journald gives a meaning (PRIORITY, MESSAGE,
// SYSLOG_IDENTIFIER, CODE_LINE, OBJECT_PID…: reservedField); "" when
// nothing is left.
func FieldName(key string) string {
	b := make([]byte, 0, len(key))
	for i := 0; i < len(key) && len(b) < maxFieldName; i++ {
		c := key[i]
		switch {
		case c >= 'a' && c <= 'z':
			c -= 'a' - 'A'
		case c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		default:
			c = '_'
		}
		if c == '_' && len(b) == 0 {
			continue
		}
		b = append(b, c)
	}
	if len(b) > 0 && b[0] >= '0' && b[0] <= '9' {
		b = append([]byte("F_"), b...)[:min(len(b)+2, maxFieldName)]
	}
	name := string(b)
	if reservedField(name) {
		// The entry's own, or one journald acts on: an event's key of
		// that name keeps its value beside them.
		return "EVENT_" + name
	}
	return name
}

// reservedField says whether name is a field journald or the entry gives
// a meaning (systemd.journal-fields(7)) that an event must not set.
func reservedField(name string) bool {
	switch name {
	case "PRIORITY", "MESSAGE", "MESSAGE_ID", "SYSLOG_IDENTIFIER", "SYSLOG_FACILITY", "SYSLOG_PID",
		"SYSLOG_TIMESTAMP", "SYSLOG_RAW", "CODE_FILE", "CODE_LINE", "CODE_FUNC", "ERRNO",
		"INVOCATION_ID", "USER_INVOCATION_ID", "DOCUMENTATION", "TID", "UNIT", "USER_UNIT":
		return true
	}
	return strings.HasPrefix(name, "OBJECT_") || strings.HasPrefix(name, "COREDUMP_")
}

// fieldValue is v as a journal value, bounded.
func fieldValue(v any) (string, bool) {
	var s string
	switch v := v.(type) {
	case nil:
		return "", false
	case string:
		s = v
	case json.Number:
		s = v.String()
	case bool:
		s = strconv.FormatBool(v)
	default:
		b, _ := json.Marshal(v)
		s = string(b)
	}
	if len(s) > maxFieldValue {
		s = s[:maxFieldValue] + "…"
	}
	return s, true
}

// fields is an event as priority and message read it: get is key's value
// as fieldValue gives it, and its JSON kind ('s' string, 'n' number, 'o'
// other); ok is false when the event has no such key (or it is null).
type fields interface {
	get(key string) (v string, kind byte, ok bool)
}

// mapFields are the fields of an event decoded whole.
type mapFields map[string]any

func (m mapFields) get(key string) (string, byte, bool) {
	v, ok := m[key]
	if !ok {
		return "", 0, false
	}
	s, ok := fieldValue(v)
	kind := byte('o')
	switch v.(type) {
	case string:
		kind = 's'
	case json.Number:
		kind = 'n'
	}
	return s, kind, ok
}

// is says whether key holds the string want.
func is(f fields, key, want string) bool {
	v, kind, _ := f.get(key)
	return kind == 's' && v == want
}

// priority is the event's PRIORITY: its level's, except that an access
// event's comes from its status (5xx: err), so that `journalctl -p err`
// shows failed requests.
func priority(f fields) journal.Priority {
	if is(f, "log", "access") {
		if v, kind, _ := f.get("status"); kind == 'n' {
			if st, _ := strconv.ParseInt(v, 10, 64); st >= 500 {
				return journal.PriErr
			}
		}
		return journal.PriInfo
	}
	if level, kind, _ := f.get("level"); kind == 's' {
		switch level {
		case "trace", "debug":
			return journal.PriDebug
		case "warn":
			return journal.PriWarning
		case "error":
			return journal.PriErr
		case "fatal", "panic":
			return journal.PriCrit
		}
	}
	return journal.PriInfo
}

// message is the entry's MESSAGE: for a request, "GET /cart 502 3.2 ms
// worker 3 — why"; otherwise the event's message, its error, and the
// last line of its traceback (what was raised).
func message(f fields) string {
	str := func(k string) string { s, _, _ := f.get(k); return s }
	var b strings.Builder
	if is(f, "log", "access") {
		b.WriteString(str("method"))
		b.WriteByte(' ')
		b.WriteString(str("path"))
		b.WriteByte(' ')
		b.WriteString(str("status"))
		if d := str("duration_ms"); d != "" {
			b.WriteString(" " + d + " ms")
		}
		if w := str("worker"); w != "" {
			b.WriteString(" worker " + w)
		}
		why := str("reason")
		if e := str("error"); e != "" {
			if why != "" {
				why += ": "
			}
			why += e
		}
		if why != "" {
			b.WriteString(" — " + why)
		}
	} else {
		b.WriteString(str("message"))
		if e := str("error"); e != "" {
			if b.Len() > 0 {
				b.WriteString(": ")
			}
			b.WriteString(e)
		}
	}
	// A traceback's last line says what was raised: the line an operator
	// scanning `journalctl -p err` needs; the rest is in TRACEBACK.
	if tb := strings.TrimRight(str("traceback"), "\n"); tb != "" {
		last := tb[strings.LastIndexByte(tb, '\n')+1:]
		if last = strings.TrimSpace(last); last != "" && !strings.Contains(b.String(), last) {
			if b.Len() > 0 {
				b.WriteString(" — ")
			}
			b.WriteString(last)
		}
	}
	m := b.String()
	if m == "" {
		m = "(event without a message)"
	}
	// The first line only (a traceback is in its own field); in a
	// request's line, a control character a client sent is shown
	// escaped, as the field itself keeps it.
	if !is(f, "log", "access") {
		if i := strings.IndexByte(m, '\n'); i >= 0 {
			m = m[:i] + " …"
		}
	}
	m = escapeControls(m)
	if len(m) > 2048 {
		m = m[:2048] + "…"
	}
	return m
}

// escapeControls writes the control characters of s as \xNN.
func escapeControls(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			fmt.Fprintf(&b, "\\x%02x", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// journalStream says whether f is the stream systemd connected to the
// journal for this service (JOURNAL_STREAM names its device and inode).
func journalStream(f *os.File) bool {
	var ok bool
	switch f {
	case os.Stderr:
		ok, _ = journal.StderrIsJournalStream()
	case os.Stdout:
		ok, _ = journal.StdoutIsJournalStream()
	}
	return ok && journal.Enabled()
}
