// Command workerd hosts the WSGI app of the config file for one worker
// instance (workerd@N under systemd).
package main

import (
	"fmt"
	"os"

	"github.com/edged/edged/pkg/worker"
)

func main() {
	if err := worker.Main(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "workerd:", err)
		os.Exit(1)
	}
}
