//go:build unix

package static

import "syscall"

// openFlags keep open(2) from blocking on a FIFO without a writer and from
// making a terminal device the controlling terminal.
const openFlags = syscall.O_NONBLOCK | syscall.O_NOCTTY
