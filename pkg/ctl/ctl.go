// Package ctl is edgectl's command line.
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

commands:
  run     run edged and the workers in the foreground, without systemd
          (Ctrl-C stops everything)

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
	switch args[0] {
	case "run":
		return run(args[1:])
	}
	return fmt.Errorf("unknown command %q: run edgectl --help", args[0])
}

type runOpts struct {
	file    *string
	workers *int
	sockets *string
}

var ro runOpts

func runFlags() *flag.FlagSet {
	fs := flag.NewFlagSet("edgectl run", flag.ContinueOnError)
	ro.file = fs.String("c", config.DefaultPath, "config `file`")
	ro.workers = fs.Int("workers", 0, "worker count (0 = the config's pool.workers)")
	ro.sockets = fs.String("socket-dir", "", "worker socket directory (default: a new temporary one)")
	return fs
}

func run(args []string) error {
	fs := runFlags()
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return local.Run(ctx, local.Options{Config: *ro.file, Workers: *ro.workers, SocketDir: *ro.sockets})
}
