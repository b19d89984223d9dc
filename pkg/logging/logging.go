// Package logging builds the zerolog logger every binary uses: native
// journal entries under systemd (PRIORITY and a field each), JSON lines
// elsewhere, or a human console format when stderr is a terminal.
package logging

import (
	"bytes"
	"io"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

func init() {
	zerolog.TimeFieldFormat = time.RFC3339Nano
}

// New returns a logger writing to w at level ("debug", "info", "warn",
// "error"; anything else means info) in format: "json"; "console";
// "journal" (native journal entries, see Journal; w takes what the
// journal does not); or "auto": the journal when w is the stream systemd
// connected to it, console on a terminal, JSON otherwise. With the
// journal, an Async w sends from its own goroutine.
func New(w io.Writer, level, format string) zerolog.Logger {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		lvl = zerolog.InfoLevel
	}
	if format == "auto" || format == "" {
		format = "json"
		if f, ok := fileOf(w); ok && IsTerminal(f) {
			format = "console"
		} else if ok && journalStream(f) {
			format = "journal"
		}
	}
	if format == "journal" {
		if a, ok := w.(*Async); ok {
			// Set before the first line: the drain reads it only after
			// receiving one.
			a.w = NewJournal(a.w)
		} else {
			w = NewJournal(w)
		}
	}
	if format == "console" {
		w = Console(w)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}

// Console renders the JSON events written to it for a person, a line
// each (a traceback as the lines it is, under its event), onto w: what a
// terminal shows, in colour when w is one.
func Console(w io.Writer) io.Writer {
	f, ok := fileOf(w)
	return zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly, NoColor: !ok || !IsTerminal(f),
		FieldsExclude: []string{TracebackField}, FormatExtra: traceback}
}

// fileOf is the file w writes to, itself or behind an Async.
func fileOf(w io.Writer) (*os.File, bool) {
	if u, ok := w.(interface{ Unwrap() io.Writer }); ok {
		w = u.Unwrap() // an Async: the terminal is behind it
	}
	f, ok := w.(*os.File)
	return f, ok
}

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// TracebackField is the field that holds a Python traceback. A terminal
// shows it as the lines it is, under its event; JSON keeps it in the
// event as one string.
const TracebackField = "traceback"

func traceback(evt map[string]any, buf *bytes.Buffer) error {
	tb, _ := evt[TracebackField].(string)
	if tb = strings.TrimRight(tb, "\n"); tb != "" {
		buf.WriteString("\n  ")
		buf.WriteString(strings.ReplaceAll(tb, "\n", "\n  "))
	}
	return nil
}

// Reported wraps an error that has been logged as an event already: a
// command's main exits non-zero without printing it again, so that the
// output stays one stream of events.
type Reported struct{ Err error }

func (r Reported) Error() string { return r.Err.Error() }
func (r Reported) Unwrap() error { return r.Err }
