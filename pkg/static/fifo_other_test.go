//go:build !unix

package static

import "testing"

// Without FIFOs the "fifo" entry is simply absent, so the cases using it
// still expect a 404.
func mkfifo(t testing.TB, path string) {}
