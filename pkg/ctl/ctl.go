// Package ctl is edgectl's command line: it resizes the worker pool,
// restarts it and reports its state by talking to systemd over D-Bus, and
// runs the suite in the foreground where there is no systemd.
package ctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/edged/edged/pkg/config"
	"github.com/edged/edged/pkg/local"
)

const usage = `usage: edgectl COMMAND [flags]

commands (over systemd's D-Bus API):
  scale N        start or stop workerd@N units until N workers run, each
                 ready before the command returns
  scale --auto   (2 x cores) + 1 workers, and how that number was found
  status         edged and every worker: state, PID, uptime, memory, CPU,
                 restarts and status line; then the load from edged's
                 metrics ([metrics] listen): req/s, p50/p99, the worker
                 queue, each worker's busy share, backlogs (--watch
                 refreshes it in place, --json for scripts; the load
                 part works under edgectl run too)
  restart        rolling restart of the workers, one at a time
  drain          take this host out of its load balancer's pool: /healthz
                 answers 503, the agent check "drain", keep-alive ends;
                 requests are still served (over edged's control socket,
                 --control PATH)
  undrain        back into the pool
  logs           the suite's events from the journal (--site S, --errors,
                 --request ID for everything about one request, -f to
                 follow, -n N, --since TIME, -o FORMAT): the journalctl
                 command that does it, run; while an edgectl run is up,
                 the same matches on its own events (--events FILE,
                 --journal to choose)
  doctor         look at the running suite for the classic mistakes (root
                 processes, sync workers on I/O-bound routes, the worker
                 count, an overflowing backlog, buffering off, secrets,
                 CPU-heavy routes, memory caps, expiring certificates):
                 ok / warn / fail with the evidence and the fix; exits
                 non-zero on a fail (--json; under edgectl run too, the
                 checks that need systemd say so)

without systemd:
  run            run edged and the workers in the foreground (Ctrl-C stops
                 everything, SIGHUP reloads edged's config and restarts the
                 workers one at a time; --reload restarts them when a .py
                 file changes)

run flags:
`

// Main runs one edgectl command.
func Main(args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(os.Stderr, usage)
		runFlags().PrintDefaults()
		if len(args) == 0 {
			return errors.New("no command given")
		}
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "run":
		return run(ctx, args[1:])
	case "scale":
		return scale(ctx, args[1:], os.Stdout)
	case "status":
		return status(ctx, args[1:], os.Stdout)
	case "doctor":
		return doctor(ctx, args[1:], os.Stdout)
	case "restart":
		return restart(ctx, args[1:], os.Stdout)
	case "drain", "undrain":
		return drain(args[1:], os.Stdout, args[0])
	case "logs":
		return logs(ctx, args[1:])
	}
	return fmt.Errorf("unknown command %q: run edgectl --help", args[0])
}

type runOpts struct {
	file    *string
	workers *int
	sockets *string
	reload  *bool
}

var ro runOpts

func runFlags() *flag.FlagSet {
	fs := flag.NewFlagSet("edgectl run", flag.ContinueOnError)
	ro.file = fs.String("c", config.DefaultPath, "config `file`")
	ro.workers = fs.Int("workers", 0, "worker count (0 = the config's pool.workers)")
	ro.sockets = fs.String("socket-dir", "", "worker socket directory (default: a new temporary one)")
	ro.reload = fs.Bool("reload", false, "restart the workers, one at a time, when a .py file under app.directory changes (for development)")
	return fs
}

func run(ctx context.Context, args []string) error {
	fs := runFlags()
	if err := fs.Parse(args); err != nil {
		return err
	}
	return local.Run(ctx, local.Options{Config: *ro.file, Workers: *ro.workers, SocketDir: *ro.sockets, Reload: *ro.reload})
}
