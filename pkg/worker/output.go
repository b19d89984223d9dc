package worker

import (
	"bufio"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/edged/edged/pkg/logging"
	"github.com/rs/zerolog"
)

// What the app writes to stdout and stderr (print, logging, Flask's
// "ERROR in app" with its traceback) becomes events of the worker's log,
// so that the suite's output stays one stream of JSON events. A Python
// traceback is one event, with the line that introduced it (logging
// writes its message, then the traceback).

// maxOutputLine bounds one line of app output; the rest of a longer line
// is dropped.
const maxOutputLine = 64 << 10

// outputQuiet is how long a line waits for a traceback that may follow it.
const outputQuiet = 50 * time.Millisecond

var (
	tracebackStart = regexp.MustCompile(`^(Traceback \(most recent call last\):|(Current thread|Thread) 0x[0-9a-f]+ \(most recent call first\):|Fatal Python error: )`)
	tracebackChain = regexp.MustCompile(`^(During handling of the above exception|The above exception was the direct cause)`)
	levelWord      = regexp.MustCompile(`\b(CRITICAL|ERROR|WARNING|WARN)\b`)
)

// appOutput reads r, one of the Python process's output streams, until
// it ends, and logs what it reads.
func appOutput(r io.Reader, stream string, log zerolog.Logger) {
	lines := make(chan string)
	go func() {
		defer close(lines)
		br := bufio.NewReaderSize(r, 4096)
		for {
			line, err := readLine(br)
			if line != "" || err == nil {
				lines <- line
			}
			if err != nil {
				return
			}
		}
	}()
	var g outputGroup
	quiet := time.NewTimer(time.Hour)
	defer quiet.Stop()
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				g.emit(stream, log)
				return
			}
			g.add(line, stream, log)
			quiet.Reset(outputQuiet)
		case <-quiet.C:
			g.emit(stream, log)
		}
	}
}

// readLine reads one line without its newline, at most maxOutputLine
// bytes of it.
func readLine(br *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(b) < maxOutputLine {
			b = append(b, chunk[:min(len(chunk), maxOutputLine-len(b))]...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		return strings.TrimRight(string(b), "\r\n"), err
	}
}

// outputGroup is the event being gathered: a line, or a line and the
// traceback after it.
type outputGroup struct {
	// requestID is the request the group's first line was written for
	// ("": none, or not known).
	requestID string
	intro     string   // the line before a traceback, or a plain line
	tb        []string // the traceback's lines
	// afterException: the traceback's exception line has come; only a
	// chained traceback continues it now.
	afterException bool
}

func (g *outputGroup) add(line, stream string, log zerolog.Logger) {
	id, line := requestMark(line)
	if g.tb != nil {
		switch {
		case line == "" || line[0] == ' ' || line[0] == '\t' || tracebackChain.MatchString(line):
			g.tb = append(g.tb, line)
			return
		case tracebackStart.MatchString(line):
			g.tb = append(g.tb, line)
			g.afterException = false
			return
		case !g.afterException:
			g.tb = append(g.tb, line) // ValueError: ...
			g.afterException = true
			return
		}
		g.emit(stream, log)
	}
	if tracebackStart.MatchString(line) {
		if g.intro == "" {
			g.requestID = id
		}
		g.tb = []string{line}
		return
	}
	g.emit(stream, log)
	g.intro, g.requestID = line, id
}

// Marks of a line the app wrote for one request (see the Python side's
// Errors): ridMark, the id, ridEnd.
const (
	ridMark = "\x1erid:"
	ridEnd  = "\x1e"
)

// requestMark splits the request mark off line: the id it names ("" when
// the line has none) and the line without it.
func requestMark(line string) (id, rest string) {
	after, ok := strings.CutPrefix(line, ridMark)
	if !ok {
		return "", line
	}
	id, rest, ok = strings.Cut(after, ridEnd)
	if !ok || len(id) > 200 {
		return "", line
	}
	return id, rest
}

func (g *outputGroup) emit(stream string, log zerolog.Logger) {
	intro, tb, id := g.intro, g.tb, g.requestID
	*g = outputGroup{}
	if intro == "" && tb == nil {
		return
	}
	for len(tb) > 0 && strings.TrimSpace(tb[len(tb)-1]) == "" {
		tb = tb[:len(tb)-1]
	}
	msg := intro
	if msg == "" && len(tb) > 0 {
		msg = tb[len(tb)-1] // the exception line
	}
	e := log.Info()
	switch {
	case len(tb) > 0:
		e = log.Error()
	case levelWord.FindString(intro) == "CRITICAL" || levelWord.FindString(intro) == "ERROR":
		e = log.Error()
	case levelWord.FindString(intro) != "":
		e = log.Warn()
	}
	e = e.Str("stream", stream)
	if id != "" {
		e = e.Str("request_id", id)
	}
	if len(tb) > 0 {
		e = e.Str(logging.TracebackField, strings.Join(tb, "\n")+"\n")
	}
	e.Msg(msg)
}
