package ctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/edged/edged/pkg/local"
)

// logsOpts are `edgectl logs`' flags.
type logsOpts struct {
	site, request, since, output string
	events                       string
	errors, follow, journal      bool
	lines                        int
	linesSet                     bool // -n given: 0 is none
}

// logs is `edgectl logs`: the journalctl command that shows this suite's
// events, run. edged and workerd write native journal entries, a field
// each (logging.Journal), so a site, a request id or a priority is a
// match, not a grep. Under edgectl run, which keeps its own stream, the
// same matches are made on its events file.
func logs(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("edgectl logs", flag.ContinueOnError)
	var o logsOpts
	fs.StringVar(&o.site, "site", "", "only `SITE`'s events: its access log and its workers' (a [[site]] by its name; the top-level site's events carry no SITE)")
	fs.StringVar(&o.request, "request", "", "everything about one request, by its `ID` (the access log's request_id, the app's X-Request-ID): edged's event, the app's output and traceback")
	fs.BoolVar(&o.errors, "errors", false, "errors only (journalctl -p err): 5xx answers, tracebacks, refused reloads")
	fs.BoolVar(&o.follow, "f", false, "follow: print new events as they come")
	fs.Func("n", "the last `N` events only (with -f: 10 unless given)", func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("%q is not a count of events", v)
		}
		o.lines, o.linesSet = n, true
		return nil
	})
	fs.StringVar(&o.since, "since", "", "events since `TIME` (journalctl's forms: \"10 min ago\", \"today\", \"2026-12-07 09:00\")")
	fs.StringVar(&o.output, "o", "", "journalctl's output `format`: short, cat, json, verbose…")
	fs.StringVar(&o.events, "events", "", "read the events `file` of an edgectl run (its first event names it); without this flag, the events of the edgectl run you started last, while it runs, else the journal")
	fs.BoolVar(&o.journal, "journal", false, "read the journal even while an edgectl run is up")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("edgectl logs takes flags only, not %q: see edgectl logs --help", fs.Arg(0))
	}
	if o.events != "" && o.journal {
		return errors.New("--events and --journal name two sources: give one")
	}
	if o.events == "" && !o.journal {
		path, err := local.RunEvents()
		if err != nil && !errors.Is(err, local.ErrNoRun) {
			return err
		}
		o.events = path
	}
	if o.events != "" {
		return runLogs(ctx, o.events, o, os.Stdout)
	}
	jargs, err := journalctlArgs(o)
	if err != nil {
		return err
	}
	path, err := exec.LookPath("journalctl")
	if err != nil {
		return errors.New("edgectl logs reads the journal, and journalctl is not installed here; no edgectl run is up either (while one is, edgectl logs reads its events)")
	}
	cmd := exec.CommandContext(ctx, path, jargs...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("journalctl %s: %w", strings.Join(jargs, " "), err)
	}
	return nil
}

// suiteUnits are the units whose entries are the suite's, for -u.
var suiteUnits = []string{"edged.service", "edged.socket", "edged-https.socket", "workerd@*", "workerd.socket", "workerd-*"}

// journalctlArgs is journalctl's command line for o.
func journalctlArgs(o logsOpts) ([]string, error) {
	for name, v := range map[string]string{"--site": o.site, "--request": o.request} {
		if strings.ContainsAny(v, "\n\x00") {
			return nil, fmt.Errorf("%s %q: a value of one line, please", name, v)
		}
	}
	var args []string
	if o.follow {
		args = append(args, "-f")
	}
	if o.linesSet {
		args = append(args, "-n", strconv.Itoa(o.lines))
	}
	if o.since != "" {
		args = append(args, "--since", o.since)
	}
	if o.errors {
		args = append(args, "-p", "err")
	}
	if o.output != "" {
		args = append(args, "-o", o.output)
	}
	// Fields matched are ANDed. A request id or a site is the suite's
	// own field: no unit needs naming (a site's workers log SITE too).
	if o.request != "" {
		args = append(args, "REQUEST_ID="+o.request)
	}
	if o.site != "" {
		args = append(args, "SITE="+o.site)
	}
	if o.request == "" && o.site == "" {
		for _, u := range suiteUnits {
			args = append(args, "-u", u)
		}
	}
	return args, nil
}
