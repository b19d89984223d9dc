// Command edgectl controls the suite: today it runs it in the foreground
// without systemd (`edgectl run`).
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/edged/edged/pkg/ctl"
	"github.com/edged/edged/pkg/generator"
)

func main() {
	// systemd runs edgectl as its generator, through a link of that name.
	if filepath.Base(os.Args[0]) == generator.Name {
		os.Exit(generator.Main(os.Args[1:], os.Stderr))
	}
	if err := ctl.Main(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "edgectl:", err)
		os.Exit(1)
	}
}
