// Package sd is the little of systemd the daemons need: sockets handed over
// by socket activation, and notifications. Outside systemd both quietly do
// nothing, so the daemons also run by hand.
package sd

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
)

// Listeners returns the sockets systemd passed, by their FileDescriptorName=
// (or the unit's name when unnamed). It is empty when not socket-activated.
func Listeners() (map[string][]net.Listener, error) {
	ls, err := activation.ListenersWithNames()
	if err != nil {
		return nil, fmt.Errorf("socket activation: %w", err)
	}
	return ls, nil
}

// Notify sends state (such as "READY=1" or "STATUS=...") to systemd; it does
// nothing when not run by systemd.
func Notify(state string) {
	daemon.SdNotify(false, state)
}

// Watchdog returns the interval systemd expects WATCHDOG=1 within, or 0
// when no watchdog is set.
func Watchdog() time.Duration {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return 0
	}
	return d
}

// Interval is how often a daemon refreshes its STATUS= line and pets a
// watchdog of period wd (0: none): every 2 s, or three times per period
// when that is more often, so that one late tick never trips it.
func Interval(wd time.Duration) time.Duration {
	if wd > 0 && wd/3 < 2*time.Second {
		return wd / 3
	}
	return 2 * time.Second
}

// ListenUnix binds a Unix socket at path with mode 0660, replacing a stale
// socket file left by a process that died, but never a live one or a file
// that is not a socket.
func ListenUnix(path string) (*net.UnixListener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket: remove it or choose another pool.socket_dir", path)
		}
		c, err := net.Dial("unix", path)
		if err == nil {
			c.Close()
		}
		// Only a refused connection proves nobody listens: a busy
		// listener with a full queue answers EAGAIN.
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%s is in use by another worker: give this one another instance number", path)
		}
		os.Remove(path)
	}
	old := syscall.Umask(0o117)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		if errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("bind %s: %w (run as a user that may write there, or change pool.socket_dir)", path, err)
		}
		return nil, fmt.Errorf("bind %s: %w", path, err)
	}
	return ln, nil
}
