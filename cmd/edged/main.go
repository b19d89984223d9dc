// Command edged is the edge: it terminates HTTP and TLS, serves static
// files, and hands every other request, fully buffered, to the workers.
package main

import (
	"fmt"
	"os"

	"github.com/edged/edged/pkg/edge"
)

func main() {
	if err := edge.Main(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "edged:", err)
		os.Exit(1)
	}
}
