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
	"strconv"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
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

// ListenUnix binds a Unix socket at path with mode 0660 and the given
// listen backlog, replacing a stale socket file left by a process that
// died, but never a live one or a file that is not a socket.
//
// The socket is returned as a blocking *os.File that no Go poller
// watches: it is the worker socket, which the Python workers accept from
// and this process only holds and passes on. A poller's standing
// registration would be woken by every connection edged makes.
func ListenUnix(path string, backlog int) (*os.File, error) {
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
			return nil, fmt.Errorf("%s is in use by another process: stop it, or choose another pool.socket_dir", path)
		}
		os.Remove(path)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket for %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	old := syscall.Umask(0o117)
	err = unix.Bind(fd, &unix.SockaddrUnix{Name: path})
	syscall.Umask(old)
	if err != nil {
		f.Close()
		if errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("bind %s: %w (run as a user that may write there, or change pool.socket_dir)", path, err)
		}
		return nil, fmt.Errorf("bind %s: %w", path, err)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	return f, nil
}

// Inherited returns the listening Unix socket on fd, passed by systemd
// (socket activation: fd 3, LISTEN_PID naming this process) or by the
// process that started this one, as a blocking *os.File that no Go poller
// watches (see ListenUnix). It returns nil when systemd passed nothing and
// fd is 0.
func Inherited(fd int) (*os.File, error) {
	what := fmt.Sprintf("inherited fd %d", fd)
	if fd == 0 {
		// Read by hand: go-systemd's activation wraps each descriptor
		// in an *os.File while it is still non-blocking, which puts it
		// in this process's poller for good.
		if os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) || os.Getenv("LISTEN_FDS") == "" {
			return nil, nil
		}
		fd, what = 3, "the socket systemd passed (fd 3)"
		for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
			os.Unsetenv(k)
		}
	}
	if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || v == 0 {
		return nil, fmt.Errorf("%s is not a listening socket", what)
	}
	if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil || v != unix.AF_UNIX {
		return nil, fmt.Errorf("%s is not a Unix socket: workerd.socket must have ListenStream=/path", what)
	}
	unix.CloseOnExec(fd)
	// Blocking before os.NewFile, so that the file is not put in this
	// process's poller (and the flag, shared with every holder, suits the
	// Python side, which accepts in a blocking way).
	if err := unix.SetNonblock(fd, false); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return os.NewFile(uintptr(fd), "queue"), nil
}
