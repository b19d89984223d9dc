package sd

import (
	"errors"
	"golang.org/x/sys/unix"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// shortDir is a temporary directory with a short path: a Unix socket's
// path must fit in 108 bytes, which t.TempDir's long names may not.
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "sd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func umask() int {
	old := syscall.Umask(0)
	syscall.Umask(old)
	return old
}

func TestListenUnix(t *testing.T) {
	tests := []struct {
		name    string
		path    string // relative to a fresh directory
		setup   func(t *testing.T, path string)
		wantErr string // "" = success
	}{
		{name: "new socket", path: "w.sock"},
		{name: "creates the directory", path: "a/b/w.sock"},
		{
			name: "replaces a stale socket",
			path: "w.sock",
			setup: func(t *testing.T, path string) {
				// A worker that died left its socket file behind.
				ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
				if err != nil {
					t.Fatal(err)
				}
				ln.SetUnlinkOnClose(false)
				ln.Close()
				if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != os.ModeSocket {
					t.Fatalf("stale socket not left behind: %v, %v", fi, err)
				}
			},
		},
		{
			name: "refuses a live socket",
			path: "w.sock",
			setup: func(t *testing.T, path string) {
				ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { ln.Close() })
				go func() {
					for {
						c, err := ln.Accept()
						if err != nil {
							return
						}
						c.Close()
					}
				}()
			},
			wantErr: "in use",
		},
		{
			name: "refuses a regular file",
			path: "w.sock",
			setup: func(t *testing.T, path string) {
				if err := os.WriteFile(path, []byte("data"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "not a socket",
		},
		{
			name: "refuses a directory",
			path: "w.sock",
			setup: func(t *testing.T, path string) {
				if err := os.Mkdir(path, 0o755); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "not a socket",
		},
		{
			name: "refuses a symlink",
			path: "w.sock",
			setup: func(t *testing.T, path string) {
				if err := os.Symlink("elsewhere.sock", path); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "not a socket",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(shortDir(t), tt.path)
			if tt.setup != nil {
				tt.setup(t, path)
			}
			before, _ := os.Lstat(path)
			maskBefore := umask()

			f, err := ListenUnix(path, 16)

			if got := umask(); got != maskBefore {
				t.Errorf("umask after ListenUnix = %#o, want it restored to %#o", got, maskBefore)
			}
			if tt.wantErr != "" {
				if err == nil {
					f.Close()
					t.Fatalf("ListenUnix(%s) = nil error, want one containing %q", tt.path, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), path) {
					t.Errorf("ListenUnix(%s) = %q, want an error naming the path and containing %q", tt.path, err, tt.wantErr)
				}
				// What was there is left alone.
				after, lerr := os.Lstat(path)
				if lerr != nil || !os.SameFile(before, after) {
					t.Errorf("ListenUnix(%s) replaced or removed what was at the path (%v)", tt.path, lerr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ListenUnix(%s) = %v", tt.path, err)
			}
			defer f.Close()
			ln := fileListener(t, f)

			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Type(); got != os.ModeSocket {
				t.Errorf("file type = %v, want a socket", got)
			}
			if got := fi.Mode().Perm(); got != 0o660 {
				t.Errorf("socket mode = %#o, want 0660", got)
			}

			// It serves.
			done := make(chan error, 1)
			go func() {
				c, err := ln.Accept()
				if err == nil {
					_, err = c.Write([]byte("ok"))
					c.Close()
				}
				done <- err
			}()
			c, err := net.DialTimeout("unix", path, 5*time.Second)
			if err != nil {
				t.Fatalf("dial the new socket: %v", err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 2)
			if _, err := c.Read(buf); err != nil || string(buf) != "ok" {
				t.Errorf("read %q, %v; want %q", buf, err, "ok")
			}
			if err := <-done; err != nil {
				t.Errorf("accept: %v", err)
			}
		})
	}
}

func TestListenUnixModeIgnoresUmask(t *testing.T) {
	for _, mask := range []int{0, 0o022, 0o077} {
		t.Run(strconv.FormatInt(int64(mask), 8), func(t *testing.T) {
			old := syscall.Umask(mask)
			defer syscall.Umask(old)
			path := filepath.Join(shortDir(t), "w.sock")
			f, err := ListenUnix(path, 16)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != 0o660 {
				t.Errorf("socket mode with umask %#o = %#o, want 0660", mask, got)
			}
		})
	}
}

// unsetenv clears key for the test and restores it after.
func unsetenv(t *testing.T, keys ...string) {
	t.Helper()
	for _, k := range keys {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

func TestListeners(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
	}{
		{name: "no LISTEN_FDS", env: nil},
		{name: "for another process", env: map[string]string{"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "w"}},
		{name: "no fds", env: map[string]string{"LISTEN_PID": strconv.Itoa(os.Getpid()), "LISTEN_FDS": "0"}},
		{name: "garbage", env: map[string]string{"LISTEN_PID": "me", "LISTEN_FDS": "lots"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			unsetenv(t, "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			got, err := Listeners()
			if err != nil {
				t.Fatalf("Listeners() error = %v", err)
			}
			if len(got) != 0 {
				t.Errorf("Listeners() = %v, want none", got)
			}
		})
	}
}

func TestWatchdog(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	tests := []struct {
		name string
		env  map[string]string
		want time.Duration
	}{
		{name: "no WATCHDOG_USEC", env: nil, want: 0},
		{name: "set for this process", env: map[string]string{"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": self}, want: 3 * time.Second},
		{name: "set without a PID", env: map[string]string{"WATCHDOG_USEC": "500000"}, want: 500 * time.Millisecond},
		{name: "set for another process", env: map[string]string{"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}, want: 0},
		{name: "garbage", env: map[string]string{"WATCHDOG_USEC": "soon"}, want: 0},
		{name: "zero", env: map[string]string{"WATCHDOG_USEC": "0"}, want: 0},
		{name: "negative", env: map[string]string{"WATCHDOG_USEC": "-5"}, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			unsetenv(t, "WATCHDOG_USEC", "WATCHDOG_PID")
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			if got := Watchdog(); got != tt.want {
				t.Errorf("Watchdog() = %v, want %v", got, tt.want)
			}
			// It leaves the environment for the next call.
			if got := os.Getenv("WATCHDOG_USEC"); got != tt.env["WATCHDOG_USEC"] {
				t.Errorf("WATCHDOG_USEC = %q after Watchdog(), want %q", got, tt.env["WATCHDOG_USEC"])
			}
		})
	}
}

func TestInterval(t *testing.T) {
	tests := []struct {
		wd, want time.Duration
	}{
		{0, 2 * time.Second},
		{30 * time.Second, 2 * time.Second},
		{6 * time.Second, 2 * time.Second},
		{3 * time.Second, time.Second},
		{300 * time.Millisecond, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := Interval(tt.wd); got != tt.want {
			t.Errorf("Interval(%v) = %v, want %v", tt.wd, got, tt.want)
		}
	}
}

func TestNotify(t *testing.T) {
	tests := []struct {
		name  string
		state string
	}{
		{"ready", "READY=1"},
		{"status", "STATUS=serving 3 requests"},
		{"watchdog and status", "WATCHDOG=1\nSTATUS=ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(shortDir(t), "notify")
			conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			t.Setenv("NOTIFY_SOCKET", path)

			Notify(tt.state)

			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 4096)
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatalf("read notification: %v", err)
			}
			if got := string(buf[:n]); got != tt.state {
				t.Errorf("notification = %q, want %q", got, tt.state)
			}
		})
	}
}

func TestNotifyWithoutSystemd(t *testing.T) {
	unsetenv(t, "NOTIFY_SOCKET")
	Notify("READY=1") // must neither block nor panic
}

// fileListener is a net.Listener on a copy of f.
func fileListener(t *testing.T, f *os.File) net.Listener {
	t.Helper()
	ln, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// The backlog is the queue of requests while every worker is busy: the
// kernel holds one more connection than it, then refuses at once.
func TestListenUnixBacklog(t *testing.T) {
	for _, backlog := range []int{0, 1, 5} {
		t.Run(strconv.Itoa(backlog), func(t *testing.T) {
			path := filepath.Join(shortDir(t), "q.sock")
			f, err := ListenUnix(path, backlog)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			held := 0
			for ; held < backlog+10; held++ {
				fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer unix.Close(fd)
				if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
					if !errors.Is(err, unix.EAGAIN) {
						t.Fatalf("connect %d: %v, want EAGAIN once the queue is full", held+1, err)
					}
					break
				}
			}
			if held != backlog+1 {
				t.Errorf("ListenUnix(backlog %d) held %d connections, want %d", backlog, held, backlog+1)
			}
		})
	}
}

// What systemd or edgectl run passes is taken as it is, blocking; what is
// not a listening Unix socket is refused with a reason.
func TestInherited(t *testing.T) {
	dir := shortDir(t)
	lf, err := ListenUnix(filepath.Join(dir, "q.sock"), 4)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	tf, err := tcp.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer tf.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()

	dup := func(f *os.File) int {
		fd, err := unix.Dup(int(f.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		unix.SetNonblock(fd, true)
		return fd
	}
	tests := []struct {
		name    string
		fd      int
		wantErr string
	}{
		{"unix listener", dup(lf), ""},
		{"tcp listener", dup(tf), "not a Unix socket"},
		{"pipe", dup(pr), "not a listening socket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Inherited(tt.fd)
			if tt.wantErr != "" {
				unix.Close(tt.fd)
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Inherited(%s) = %v, want an error containing %q", tt.name, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Inherited(%s) = %v", tt.name, err)
			}
			defer f.Close()
			if fl, _ := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0); fl&unix.O_NONBLOCK != 0 {
				t.Errorf("Inherited(%s) left the socket non-blocking", tt.name)
			}
		})
	}
	t.Run("nothing passed", func(t *testing.T) {
		t.Setenv("LISTEN_PID", "")
		if f, err := Inherited(0); f != nil || err != nil {
			t.Errorf("Inherited(0) outside systemd = %v, %v; want nil, nil", f, err)
		}
	})
}
