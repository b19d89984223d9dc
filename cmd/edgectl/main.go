// Command edgectl controls the suite: today it runs it in the foreground
// without systemd (`edgectl run`).
package main

import (
	"fmt"
	"os"

	"github.com/edged/edged/pkg/ctl"
)

func main() {
	if err := ctl.Main(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "edgectl:", err)
		os.Exit(1)
	}
}
