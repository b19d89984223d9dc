package ctl

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/edged/edged/pkg/logging"
)

// runLogs is edgectl logs on an edgectl run's events file: the matches
// journalctl makes under systemd (SITE=, REQUEST_ID=, -p err), made on
// the JSON lines the run keeps, so that one command finds a request's
// events wherever the suite runs.
func runLogs(ctx context.Context, path string, o logsOpts, w io.Writer) error {
	m, err := newRunMatch(o, time.Now())
	if err != nil {
		return err
	}
	show, err := runPrinter(o.output, w)
	if err != nil {
		return err
	}
	// The file before the last rotation first, then the current one:
	// opened in that order, so that a rotation in between shows as the
	// two being one file (read once).
	old, oldErr := os.Open(path + ".1")
	f, err := os.Open(path)
	if err != nil {
		if oldErr == nil {
			old.Close()
		}
		return fmt.Errorf("edgectl run's events: %w", err)
	}
	defer func() { f.Close() }()
	// The last n only: -n, or, when following from no time, 10, as
	// journalctl -f.
	var last ring
	last.n = -1
	if o.linesSet {
		last.n = o.lines
	} else if o.follow && o.since == "" {
		last.n = 10
	}
	emit := func(line []byte) {
		e := readEvent(line)
		if !m.match(e) {
			return
		}
		if last.n >= 0 {
			last.add(e)
		} else {
			show(e)
		}
	}
	if oldErr == nil {
		if !sameFile(old, f) {
			readLines(bufio.NewReader(old), emit)
		}
		old.Close()
	}
	r := bufio.NewReader(f)
	partial := readLines(r, emit)
	for _, e := range last.events() {
		show(e)
	}
	if !o.follow {
		return nil
	}
	// Follow: as tail -F does, by looking every quarter second; a
	// rotation (the path now another file) is read from its start once
	// the old file's last lines are out. The run renames the file
	// before it makes the next, so a path missing for a moment is a
	// rotation; missing for a second, the run has ended.
	last.n = -1
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	missing := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		partial = readLines(r, emit, partial...)
		st, err := os.Stat(path)
		if err != nil {
			if missing++; missing >= 4 {
				fmt.Fprintln(os.Stderr, "edgectl logs: the events file is gone: that edgectl run has ended")
				return nil
			}
			continue
		}
		missing = 0
		if cur, err := f.Stat(); err == nil && !os.SameFile(cur, st) {
			nf, err := os.Open(path)
			if err != nil {
				continue
			}
			// What the old file got after the read above, then
			// the new one from its start.
			if partial = readLines(r, emit, partial...); len(partial) > 0 {
				emit(append(partial, '\n'))
			}
			f.Close()
			f, r = nf, bufio.NewReader(nf)
			partial = readLines(r, emit)
		}
	}
}

// sameFile says whether a and b are one file.
func sameFile(a, b *os.File) bool {
	sa, err1 := a.Stat()
	sb, err2 := b.Stat()
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// readLines calls emit with each whole line r has now, after the partial
// line a last call left, and returns the new partial line.
func readLines(r *bufio.Reader, emit func([]byte), partial ...byte) []byte {
	for {
		chunk, err := r.ReadBytes('\n')
		partial = append(partial, chunk...)
		if err != nil {
			return partial
		}
		emit(partial)
		partial = nil
	}
}

// ring keeps the last n events.
type ring struct {
	n   int
	buf []runEvent
	at  int
}

func (r *ring) add(e runEvent) {
	if r.n == 0 {
		return
	}
	if len(r.buf) < r.n {
		r.buf = append(r.buf, e)
		return
	}
	r.buf[r.at] = e
	r.at = (r.at + 1) % r.n
}

func (r *ring) events() []runEvent {
	return append(r.buf[r.at:len(r.buf):len(r.buf)], r.buf[:r.at]...)
}

// runEvent is one line of the file, read once for the match and the
// printer: its message, priority and fields as the journal would have
// them (logging.Entry); err when the line is not an event (a child's
// stray output).
type runEvent struct {
	line []byte
	msg  string
	prio journal.Priority
	vars map[string]string
	err  error
}

func readEvent(line []byte) runEvent {
	e := runEvent{line: line}
	e.msg, e.prio, e.vars, e.err = logging.Entry(line)
	return e
}

// runMatch is what a line must be to be shown.
type runMatch struct {
	site, request string
	errors        bool
	since         time.Time
}

func newRunMatch(o logsOpts, now time.Time) (runMatch, error) {
	m := runMatch{site: o.site, request: o.request, errors: o.errors}
	if o.since != "" {
		t, err := parseSince(o.since, now)
		if err != nil {
			return m, err
		}
		m.since = t
	}
	return m, nil
}

// match says whether e is shown: by its fields as the journal has
// them, so that --site, --request and --errors pick the same events from
// a run as from the journal. A line that is not an event is shown only
// when nothing is asked.
func (m runMatch) match(e runEvent) bool {
	filtered := m.site != "" || m.request != "" || m.errors || !m.since.IsZero()
	if e.err != nil {
		return !filtered
	}
	if m.site != "" && e.vars["SITE"] != m.site ||
		m.request != "" && e.vars["REQUEST_ID"] != m.request ||
		m.errors && e.prio > journal.PriErr {
		return false
	}
	if !m.since.IsZero() {
		// The journal keeps no TIME field: the event's own, read
		// only when asked.
		var ev struct {
			Time string `json:"time"`
		}
		json.Unmarshal(e.line, &ev)
		t, err := time.Parse(time.RFC3339Nano, ev.Time)
		if err != nil || t.Before(m.since) {
			return false
		}
	}
	return true
}

// runPrinter writes an event as -o asks: short (the default: as a
// terminal shows events), cat (the message alone) or json (the line); a
// line that is not an event, as it came.
func runPrinter(output string, w io.Writer) (func(runEvent), error) {
	raw := func(e runEvent) {
		w.Write(bytes.TrimRight(e.line, "\n"))
		io.WriteString(w, "\n")
	}
	switch output {
	case "", "short":
		console := logging.Console(w)
		return func(e runEvent) {
			if e.err != nil {
				raw(e)
			} else if _, err := console.Write(e.line); err != nil {
				raw(e)
			}
		}, nil
	case "cat":
		return func(e runEvent) {
			if e.err != nil {
				raw(e)
				return
			}
			io.WriteString(w, e.msg+"\n")
		}, nil
	case "json":
		return raw, nil
	}
	return nil, fmt.Errorf("-o %q: an edgectl run's events print as short, cat or json", output)
}

// parseSince reads --since as journalctl's common forms: "10 min ago",
// "-1h", "today", "yesterday", "now", "2026-12-07", "2026-12-07 09:00",
// "2026-12-07 09:00:30", "09:00" (today), or RFC 3339; local time.
func parseSince(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	day := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, now.Location())
	switch s {
	case "now":
		return now, nil
	case "today":
		return day, nil
	case "yesterday":
		return day.AddDate(0, 0, -1), nil
	}
	if d, ok := strings.CutSuffix(s, " ago"); ok {
		if v, err := agoDuration(strings.TrimSpace(d)); err == nil {
			return now.Add(-v), nil
		}
	}
	if d, ok := strings.CutPrefix(s, "-"); ok {
		if v, err := time.ParseDuration(d); err == nil {
			return now.Add(-v), nil
		}
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, now.Location()); err == nil {
			return t, nil
		}
	}
	for _, layout := range []string{"15:04:05", "15:04"} {
		if t, err := time.ParseInLocation(layout, s, now.Location()); err == nil {
			return day.Add(time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute + time.Duration(t.Second())*time.Second), nil
		}
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--since %q: use \"10 min ago\", \"-1h\", \"today\", \"yesterday\", \"2026-12-07 09:00\" or \"09:00\"", s)
}

// agoDuration reads "10 min", "30s", "2 hours", "1 day".
func agoDuration(s string) (time.Duration, error) {
	num := strings.TrimRightFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	unit := strings.TrimSpace(s[len(num):])
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 {
		return 0, errors.New("not a count")
	}
	var u time.Duration
	switch unit {
	case "s", "sec", "secs", "second", "seconds":
		u = time.Second
	case "m", "min", "mins", "minute", "minutes":
		u = time.Minute
	case "h", "hour", "hours":
		u = time.Hour
	case "d", "day", "days":
		u = 24 * time.Hour
	default:
		return 0, errors.New("not a unit")
	}
	return time.Duration(n) * u, nil
}
