package logging

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"testing"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/rs/zerolog"
)

type sent struct {
	msg  string
	prio journal.Priority
	vars map[string]string
}

// capture is a Journal whose entries are kept, sent the fast way (a
// datagram) where it takes them and the slow way otherwise.
func capture(fail error) (*Journal, *[]sent, *bytes.Buffer) {
	var got []sent
	var fallback bytes.Buffer
	j := &Journal{Fallback: &fallback, Identifier: "edged", send: func(m string, p journal.Priority, v map[string]string) error {
		if fail != nil {
			return fail
		}
		got = append(got, sent{m, p, v})
		return nil
	}}
	j.datagrams = func(bufs [][]byte) (int, error) {
		for i, b := range bufs {
			if fail != nil {
				return i, fail
			}
			e, err := parseDatagram(b)
			if err != nil {
				return i, err
			}
			got = append(got, e)
		}
		return len(bufs), nil
	}
	return j, &got, &fallback
}

// parseDatagram reads an entry of journald's native protocol back.
func parseDatagram(b []byte) (sent, error) {
	e := sent{vars: map[string]string{}}
	for len(b) > 0 {
		nl := bytes.IndexByte(b, '\n')
		if nl < 0 {
			return e, fmt.Errorf("no newline in %q", b)
		}
		var name, value string
		if eq := bytes.IndexByte(b[:nl], '='); eq >= 0 {
			name, value, b = string(b[:eq]), string(b[eq+1:nl]), b[nl+1:]
		} else {
			name, b = string(b[:nl]), b[nl+1:]
			if len(b) < 8 {
				return e, fmt.Errorf("%s: no length", name)
			}
			n := binary.LittleEndian.Uint64(b)
			if uint64(len(b)) < 8+n+1 || b[8+n] != '\n' {
				return e, fmt.Errorf("%s: length %d does not fit", name, n)
			}
			value, b = string(b[8:8+n]), b[8+n+1:]
		}
		if _, dup := e.vars[name]; dup {
			return e, fmt.Errorf("%s twice", name)
		}
		e.vars[name] = value
	}
	p, err := strconv.Atoi(e.vars["PRIORITY"])
	if err != nil {
		return e, fmt.Errorf("PRIORITY %q", e.vars["PRIORITY"])
	}
	e.prio, e.msg = journal.Priority(p), e.vars["MESSAGE"]
	delete(e.vars, "PRIORITY")
	delete(e.vars, "MESSAGE")
	return e, nil
}

// Each event is one entry: priority from the level (an access event's
// from its status), a short message, and a field each.
func TestJournalEntries(t *testing.T) {
	j, got, _ := capture(nil)
	log := zerolog.New(j)
	access := log.With().Str("log", "access").Logger()
	access.Warn().Int("status", 502).Str("method", "GET").Str("path", "/cart").Float64("duration_ms", 3.2).
		Str("worker", "3").Str("reason", "app.timeout (30s) passed").Str("request_id", "r-1").Msg("")
	access.Info().Int("status", 200).Str("method", "POST").Str("path", "/").Float64("duration_ms", 1).Msg("")
	log.Error().Str("traceback", "Traceback (most recent call last):\n  File \"app.py\"\nZeroDivisionError").Msg("the app failed")
	log.Warn().Err(errors.New("bad value")).Msg("reload refused")
	log.Debug().Msg("detail")
	log.Info().Msg("ready")

	want := []struct {
		msg  string
		prio journal.Priority
		vars map[string]string
	}{
		{"GET /cart 502 3.2 ms worker 3 — app.timeout (30s) passed", journal.PriErr,
			map[string]string{"STATUS": "502", "METHOD": "GET", "PATH": "/cart", "LOG": "access", "REQUEST_ID": "r-1", "WORKER": "3", "DURATION_MS": "3.2"}},
		{"POST / 200 1 ms", journal.PriInfo, map[string]string{"STATUS": "200", "LOG": "access"}},
		{"the app failed — ZeroDivisionError", journal.PriErr, map[string]string{"TRACEBACK": "Traceback (most recent call last):\n  File \"app.py\"\nZeroDivisionError"}},
		{"reload refused: bad value", journal.PriWarning, map[string]string{"ERROR": "bad value"}},
		{"detail", journal.PriDebug, nil},
		{"ready", journal.PriInfo, nil},
	}
	if len(*got) != len(want) {
		t.Fatalf("%d entries, want %d: %+v", len(*got), len(want), *got)
	}
	for i, w := range want {
		g := (*got)[i]
		if g.msg != w.msg || g.prio != w.prio {
			t.Errorf("entry %d: %q at %d, want %q at %d", i, g.msg, g.prio, w.msg, w.prio)
		}
		for k, v := range w.vars {
			if g.vars[k] != v {
				t.Errorf("entry %d: %s = %q, want %q", i, k, g.vars[k], v)
			}
		}
		if g.vars["SYSLOG_IDENTIFIER"] != "edged" {
			t.Errorf("entry %d: SYSLOG_IDENTIFIER = %q", i, g.vars["SYSLOG_IDENTIFIER"])
		}
		for _, k := range []string{"LEVEL", "MESSAGE", "TIME", "PRIORITY"} {
			if _, ok := g.vars[k]; ok {
				t.Errorf("entry %d: %s sent as a field of its own", i, k)
			}
		}
	}
}

// What a client controls stays inside its field: a newline in a path
// makes neither a field nor an entry, and the message keeps one line.
func TestJournalNoForgery(t *testing.T) {
	j, got, _ := capture(nil)
	access := zerolog.New(j).With().Str("log", "access").Logger()
	access.Info().Int("status", 404).Str("method", "GET").
		Str("path", "/a\nPRIORITY=0\nMESSAGE=forged").Str("user_agent", "x\nSTATUS=200").Msg("")
	if len(*got) != 1 {
		t.Fatalf("%d entries, want 1", len(*got))
	}
	g := (*got)[0]
	if g.prio != journal.PriInfo || g.vars["STATUS"] != "404" || g.vars["PATH"] != "/a\nPRIORITY=0\nMESSAGE=forged" {
		t.Errorf("entry %+v", g)
	}
	if want := `GET /a\x0aPRIORITY=0\x0aMESSAGE=forged 404`; g.msg != want {
		t.Errorf("message %q, want %q: one line, the client's control characters escaped", g.msg, want)
	}
}

// An entry the journal does not take goes to the fallback, whole.
func TestJournalFallback(t *testing.T) {
	j, _, fallback := capture(errors.New("no socket"))
	log := zerolog.New(j)
	log.Info().Str("k", "v").Msg("hello")
	j.Write([]byte("not json\n{\"a\":1}{\"b\":2}\n"))
	if got := fallback.String(); got != "{\"level\":\"info\",\"k\":\"v\",\"message\":\"hello\"}\nnot json\n{\"a\":1}{\"b\":2}\n" {
		t.Errorf("fallback got %q", got)
	}
	if j.Failed() != 3 {
		t.Errorf("Failed() = %d, want 3", j.Failed())
	}
}

func TestFieldName(t *testing.T) {
	for in, want := range map[string]string{
		"status":                "STATUS",
		"request_id":            "REQUEST_ID",
		"_private":              "PRIVATE",
		"a-b.c":                 "A_B_C",
		"9lives":                "F_9LIVES",
		"___":                   "",
		"":                      "",
		strings.Repeat("x", 80): strings.Repeat("X", 64),
	} {
		if got := FieldName(in); got != want {
			t.Errorf("FieldName(%q) = %q, want %q", in, got, want)
		}
	}
}

// Many fields, and huge values, are bounded.
func TestJournalBounds(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"level":"info","message":"m","big":"`)
	b.WriteString(strings.Repeat("v", 100<<10))
	b.WriteString(`"`)
	for i := 0; i < 100; i++ {
		b.WriteString(`,"f` + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + `_` + strings.Repeat("1", i/26) + `":1`)
	}
	b.WriteString("}")
	_, _, vars, err := Entry([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(vars) > maxFields {
		t.Errorf("%d fields, want at most %d", len(vars), maxFields)
	}
	if v, ok := vars["BIG"]; ok && len(v) > maxFieldValue+len("…") {
		t.Errorf("BIG is %d bytes", len(v))
	}
}

// FuzzJournalEntry: whatever line comes, Entry gives valid field names
// and a one-line message, or an error.
func FuzzJournalEntry(f *testing.F) {
	f.Add([]byte(`{"level":"error","log":"access","status":502,"path":"/x\nY=1","message":"m"}`))
	f.Add([]byte(`{"level":"info","a b":{"c":[1,2]},"_x":null}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		msg, _, vars, err := Entry(line)
		if err != nil {
			return
		}
		if strings.Contains(msg, "\n") {
			t.Errorf("message %q has a newline", msg)
		}
		for k := range vars {
			if k == "" || k[0] == '_' || len(k) > maxFieldName || strings.Trim(k, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != "" || k[0] >= '0' && k[0] <= '9' {
				t.Errorf("field name %q is not one journald takes", k)
			}
		}
	})
}

// FuzzJournalFast: the fast way (scanFlat, appendEntry) gives the entry
// the slow way (Entry) gives, wherever it takes the line.
func FuzzJournalFast(f *testing.F) {
	f.Add([]byte(`{"level":"warn","log":"access","status":502,"method":"GET","path":"/a\nPRIORITY=0","duration_ms":3.2,"worker":"3","reason":"r","error":"e"}`))
	f.Add([]byte(`{"level":"error","message":"m","traceback":"Traceback\n  x\nValueError: v\n","request_id":"r-1","ok":true,"n":null}`))
	f.Add([]byte(`{"a\u00e9":"\ud83d\ude00","b":-1.5e+3,"priority":"x","message":"\u0001"}`))
	f.Add([]byte(`{"a":1,"a":2}`))
	f.Add([]byte(`{"a":{"b":1}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"level":"error","caller":"github.com/edged/edged/pkg/edge/main.go:122","message":"reload refused"}`))
	f.Add([]byte(`{"caller":"x:1","code_file":"y","CODE_LINE":"2","caller":"z:3"}`))
	f.Add([]byte(`{"caller":"no line:","n":1}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		pairs, ok := scanFlat(line, nil)
		if !ok {
			return
		}
		b, ok := appendEntry(nil, pairs, "edged")
		if !ok {
			return
		}
		fast, err := parseDatagram(b)
		if err != nil {
			t.Fatalf("%q: the datagram does not parse: %v\n%q", line, err, b)
		}
		msg, prio, vars, err := Entry(line)
		if err != nil {
			t.Fatalf("%q: the fast way took what the slow way refuses: %v", line, err)
		}
		vars["SYSLOG_IDENTIFIER"] = "edged"
		if fast.msg != msg || fast.prio != prio || !maps.Equal(fast.vars, vars) {
			t.Errorf("%q:\nfast %q %d %q\nslow %q %d %q", line, fast.msg, fast.prio, fast.vars, msg, prio, vars)
		}
	})
}

// An error that says where in edged's code it was raised gives the
// journal CODE_FILE and CODE_LINE; a caller that is not a file and a
// line stays a field of its own, and an event cannot set CODE_* itself.
func TestJournalCodeLocation(t *testing.T) {
	j, got, _ := capture(nil)
	log := zerolog.New(j)
	log.Error().Caller().Msg("reload refused")
	log.Error().Str(CallerField, "somewhere").Str("code_line", "7").Msg("not a place")
	if len(*got) != 2 {
		t.Fatalf("%d entries, want 2", len(*got))
	}
	g := (*got)[0]
	if !strings.HasSuffix(g.vars["CODE_FILE"], "journal_test.go") || g.vars["CODE_LINE"] == "" || g.vars["CALLER"] != "" {
		t.Errorf("entry with a caller: %q, want CODE_FILE …journal_test.go and a CODE_LINE", g.vars)
	}
	g = (*got)[1]
	if g.vars["CALLER"] != "somewhere" || g.vars["CODE_FILE"] != "" || g.vars["CODE_LINE"] != "" || g.vars["EVENT_CODE_LINE"] != "7" {
		t.Errorf("entry with no place: %q, want CALLER=somewhere, EVENT_CODE_LINE=7 and no CODE_*", g.vars)
	}
}

// A caller longer than a field holds is cut, and then names no place:
// the fast way and the slow way agree on it.
func TestJournalLongCaller(t *testing.T) {
	line := []byte(`{"level":"error","caller":"` + strings.Repeat("a", maxFieldValue) + `:12","message":"m"}`)
	pairs, ok := scanFlat(line, nil)
	if !ok {
		t.Fatal("the fast way refused a flat event")
	}
	b, ok := appendEntry(nil, pairs, "")
	if !ok {
		t.Fatal("the fast way refused the entry")
	}
	fast, err := parseDatagram(b)
	if err != nil {
		t.Fatal(err)
	}
	_, _, slow, err := Entry(line)
	if err != nil {
		t.Fatal(err)
	}
	if fast.vars["CODE_FILE"] != "" || slow["CODE_FILE"] != "" || fast.vars["CALLER"] != slow["CALLER"] {
		t.Errorf("fast CODE_FILE %d bytes, CALLER %d; slow CODE_FILE %d, CALLER %d: want no place and one CALLER",
			len(fast.vars["CODE_FILE"]), len(fast.vars["CALLER"]), len(slow["CODE_FILE"]), len(slow["CALLER"]))
	}
}

// Many goroutines log through one Journal at once (workerd does: the
// app's stdout and stderr, its own events), each event whole.
func TestJournalConcurrent(t *testing.T) {
	j, got, _ := capture(nil)
	log := zerolog.New(j)
	done := make(chan struct{})
	for g := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 200 {
				log.Info().Int("g", g).Int("i", i).Str("path", strings.Repeat("p", g*10)).Msg("m")
			}
		}()
	}
	for range 8 {
		<-done
	}
	if len(*got) != 1600 {
		t.Fatalf("%d entries, want 1600", len(*got))
	}
	for _, e := range *got {
		g, _ := strconv.Atoi(e.vars["G"])
		if e.vars["PATH"] != strings.Repeat("p", g*10) {
			t.Fatalf("an entry mixes two events: %v", e.vars)
		}
	}
}
