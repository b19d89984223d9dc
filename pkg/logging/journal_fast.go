package logging

import (
	"encoding/binary"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The fast way to an entry: zerolog's events are flat JSON objects, so
// one pass over the line finds their pairs without decoding them into a
// map, and the entry is written straight into a datagram buffer of
// journald's native protocol. What the pass does not take as it is (a
// nested value, a repeated name, a field too many, anything malformed)
// goes the slow way, through Entry; FuzzJournalFast holds the two to the
// same entries. On this machine the slow way cost edged some 30 µs of CPU
// an access event more than a JSON line (docs/performance.md).

// pair is one field of an event: its key, its value as fieldValue gives
// it, and its JSON kind (see fields).
type pair struct {
	key, val string
	kind     byte
}

// field is the journal field p becomes; "" for none: the keys the entry
// takes otherwise (level, message, time), and null values.
func (p pair) field() string {
	switch p.key {
	case "level", "message", "time":
		return ""
	}
	if p.kind == 0 {
		return ""
	}
	return FieldName(p.key)
}

// code is p as CODE_FILE and CODE_LINE, when it is a caller's place.
func (p pair) code() (file, line string, ok bool) {
	if p.key != CallerField || p.kind != 's' {
		return "", "", false
	}
	return codeLocation(p.val)
}

// flat is an event's pairs, as fields.
type flat []pair

func (f flat) get(key string) (string, byte, bool) {
	for _, p := range f {
		if p.key == key {
			return p.val, p.kind, true
		}
	}
	return "", 0, false
}

// scanFlat appends the pairs of line, a flat JSON object, to pairs (null
// values left out); ok is false where the slow way must decide.
func scanFlat(line []byte, pairs []pair) ([]pair, bool) {
	i := skipSpace(line, 0)
	if i >= len(line) || line[i] != '{' {
		return pairs, false
	}
	i = skipSpace(line, i+1)
	if i < len(line) && line[i] == '}' {
		return pairs, skipSpace(line, i+1) == len(line)
	}
	for {
		if i >= len(line) || line[i] != '"' {
			return pairs, false
		}
		end, ok := stringEnd(line, i)
		if !ok {
			return pairs, false
		}
		key, ok := jsonString(line[i:end])
		if !ok {
			return pairs, false
		}
		i = skipSpace(line, end)
		if i >= len(line) || line[i] != ':' {
			return pairs, false
		}
		i = skipSpace(line, i+1)
		if i >= len(line) {
			return pairs, false
		}
		var p pair
		p.key = key
		switch c := line[i]; {
		case c == '"':
			end, ok = stringEnd(line, i)
			if !ok {
				return pairs, false
			}
			if p.val, ok = jsonString(line[i:end]); !ok {
				return pairs, false
			}
			p.kind = 's'
		case c == 't' || c == 'f' || c == 'n':
			end = i
			for end < len(line) && line[end] >= 'a' && line[end] <= 'z' {
				end++
			}
			switch string(line[i:end]) {
			case "true", "false":
				p.val, p.kind = string(line[i:end]), 'o'
			case "null":
				p.kind = 0
			default:
				return pairs, false
			}
		case c == '-' || c >= '0' && c <= '9':
			end = i
			for end < len(line) && (line[end] >= '0' && line[end] <= '9' || line[end] == '-' || line[end] == '+' || line[end] == '.' || line[end] == 'e' || line[end] == 'E') {
				end++
			}
			if !json.Valid(line[i:end]) {
				return pairs, false
			}
			p.val, p.kind = string(line[i:end]), 'n'
		default:
			return pairs, false // a nested value: the slow way
		}
		if len(pairs) > maxFields+3 {
			return pairs, false // more than an entry keeps: the slow way picks
		}
		for _, q := range pairs {
			if q.key == key {
				return pairs, false // a repeated key: the last wins there
			}
		}
		if len(p.val) > maxFieldValue {
			p.val = p.val[:maxFieldValue] + "…"
		}
		if p.kind != 0 {
			pairs = append(pairs, p)
		} else {
			pairs = append(pairs, pair{key: key}) // null: a key, no field
		}
		i = skipSpace(line, end)
		if i >= len(line) {
			return pairs, false
		}
		switch line[i] {
		case ',':
			i = skipSpace(line, i+1)
		case '}':
			return pairs, skipSpace(line, i+1) == len(line)
		default:
			return pairs, false
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// stringEnd is the index after the closing quote of the string that
// begins at b[i].
func stringEnd(b []byte, i int) (int, bool) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	return 0, false
}

// jsonString decodes the quoted JSON string q as encoding/json does.
func jsonString(q []byte) (string, bool) {
	in := q[1 : len(q)-1]
	plain := utf8.Valid(in)
	for _, c := range in {
		if c == '\\' || c < 0x20 {
			plain = false
			break
		}
	}
	if plain {
		return string(in), true
	}
	var s string
	if err := json.Unmarshal(q, &s); err != nil {
		return "", false
	}
	return s, true
}

// appendEntry writes the entry of one event as a datagram of journald's
// native protocol; ok is false where the slow way must decide.
func appendEntry(b []byte, f flat, identifier string) ([]byte, bool) {
	var names [maxFields]string
	n := 0
	for _, p := range f {
		name := p.field()
		if _, _, ok := p.code(); ok {
			if n+2 > maxFields || slices.Contains(names[:n], "CODE_LINE") {
				return b, false
			}
			names[n], name = "CODE_LINE", "CODE_FILE"
			n++
		}
		if name == "" {
			continue
		}
		if n == maxFields || slices.Contains(names[:n], name) {
			return b, false // too many fields, or two keys for one: the slow way picks
		}
		names[n] = name
		n++
	}
	b = appendJournalField(b, "PRIORITY", strconv.Itoa(int(priority(f))))
	b = appendJournalField(b, "MESSAGE", message(f))
	for _, p := range f {
		if file, line, ok := p.code(); ok {
			b = appendJournalField(b, "CODE_FILE", file)
			b = appendJournalField(b, "CODE_LINE", line)
		} else if name := p.field(); name != "" {
			b = appendJournalField(b, name, p.val)
		}
	}
	if identifier != "" {
		b = appendJournalField(b, "SYSLOG_IDENTIFIER", identifier)
	}
	return b, true
}

// appendJournalField writes NAME=value, or, for a value holding a
// newline, journald's binary-safe form: the name, a newline, the value's
// length (64 bits, little-endian), the value, a newline.
func appendJournalField(b []byte, name, value string) []byte {
	b = append(b, name...)
	if strings.IndexByte(value, '\n') < 0 {
		b = append(b, '=')
		b = append(b, value...)
		return append(b, '\n')
	}
	b = append(b, '\n')
	b = binary.LittleEndian.AppendUint64(b, uint64(len(value)))
	b = append(b, value...)
	return append(b, '\n')
}
