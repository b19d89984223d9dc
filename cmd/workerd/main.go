// Command workerd hosts the WSGI app of the config file for one worker
// instance (workerd@N under systemd).
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/edged/edged/pkg/logging"
	"github.com/edged/edged/pkg/worker"
)

func main() {
	if err := worker.Main(os.Args[1:]); err != nil {
		if !errors.As(err, new(logging.Reported)) {
			fmt.Fprintln(os.Stderr, "workerd:", err)
		}
		os.Exit(1)
	}
}
